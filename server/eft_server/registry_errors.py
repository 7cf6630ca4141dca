"""Errors a registry engine reports, whatever its database (the driver catches these)."""

from __future__ import annotations


class RegistryError(Exception):
    """A change could not be written (the future of ``flush`` fails with it)."""


class NameTaken(RegistryError):
    """A registration lost: another server sharing the database committed the same name
    (or version-4 static key) first. Its client is answered as for any taken name."""


class RegistryUnreachable(RegistryError):
    """A read could not be answered: the database is down, unreachable or too slow."""
