"""``python -m eft_attacks NAME [options]``, the same as ``eft-attack``."""

from .cli import entry

entry()
