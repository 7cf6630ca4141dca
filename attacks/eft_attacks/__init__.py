"""Executable attacks on protocol version 3, and their version-4 attempts (``--protocol 4``;
see docs/SECURITY.md)."""
