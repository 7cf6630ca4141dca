"""The one error an attack raises when it cannot be carried out (not a verdict).

Its own module so that ``recording`` (which ``common`` uses) can raise it without
importing ``common``."""

from __future__ import annotations


class AttackError(Exception):
    """The attack could not be carried out (unreachable target, bad input): not a verdict."""
