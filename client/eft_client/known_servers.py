"""Which server keys this client trusts, like SSH's ``known_hosts``.

``known_servers`` (in the per-user config directory, or the config directory given;
docs/IDENTITY.md) holds lines ``host:port SHA256:...``. A fingerprint given
on the command line or on line 4 of transfer.info must match. Otherwise the first
contact records the server's fingerprint (trust on first use) and every later contact
must present the same one.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import make_private_directory
from .errors import ServerIdentityChanged


def _read(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return pins
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            pins[parts[0]] = parts[1]
    return pins


class ServerPins:
    def __init__(self, path: Path, server: str, configured: str | None = None) -> None:
        self.path = path
        self.server = server
        self.configured = configured
        self.newly_pinned: str | None = None

    @property
    def pinned(self) -> str | None:
        return self.configured or _read(self.path).get(self.server)

    def check(self, fingerprint: str) -> None:
        """Raise ``ServerIdentityChanged`` unless ``fingerprint`` is the trusted one."""
        expected = self.pinned
        if expected is None:
            self._record(fingerprint)
            self.newly_pinned = fingerprint
            return
        if fingerprint != expected:
            source = "the configured fingerprint" if self.configured else str(self.path)
            raise ServerIdentityChanged(
                f"the server at {self.server} presented {fingerprint}, but {source} says "
                f"{expected}. Someone may be intercepting the connection; if the server's "
                f"key really changed, remove its line from {self.path}"
            )

    def _record(self, fingerprint: str) -> None:
        make_private_directory(self.path.parent)
        with open(self.path, "a", encoding="ascii") as handle:
            handle.write(f"{self.server} {fingerprint}\n")
            handle.flush()
            os.fsync(handle.fileno())
