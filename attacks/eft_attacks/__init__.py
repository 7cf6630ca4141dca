"""Executable attacks on protocol version 3 (see docs/SECURITY.md)."""
