"""Which server keys this client trusts, like SSH's ``known_hosts``.

``known_servers`` (in the per-user config directory, or the config directory given;
docs/IDENTITY.md) holds lines ``host:port SHA256:...``: the pin. A fingerprint given
on the command line or on line 4 of transfer.info must match. Otherwise the first
contact records the server's fingerprint (trust on first use) and every later contact
must present the same one.

Rotation (docs/PROTOCOL-v4.md §4, "Rotating the server key"): a server that announces
its next key (``NEXT_KEY``, proven in the handshake by the pinned key and by itself)
gets a second line, ``host:port SHA256:... next``. A later contact presenting that key
(the server retired the old one) moves the pin to it. Older clients read only
two-field lines, so they skip the ``next`` line and keep their pin. Every change
rewrites the file atomically (a temporary file, fsync, rename, the directory synced).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import make_private_directory
from .errors import ServerIdentityChanged

NEXT_MARK = "next"


@dataclass(frozen=True)
class PinChange:
    """What a contact changed in ``known_servers``, said once to the user."""

    #: "rotating": the next key trusted as well; "rotated": instead; "announced": a
    #: configured fingerprint, which the user must change.
    kind: str
    fingerprint: str
    previous: str


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return []


def _entries(path: Path, server: str) -> tuple[str | None, str | None]:
    """The pin and the announced next key for ``server`` (the last line of each wins)."""
    pin = next_key = None
    for line in _lines(path):
        parts = line.split()
        if line.startswith("#") or not parts or parts[0] != server:
            continue
        if len(parts) == 2:
            pin = parts[1]
        elif len(parts) == 3 and parts[2] == NEXT_MARK:
            next_key = parts[1]
    return pin, next_key


class ServerPins:
    def __init__(self, path: Path, server: str, configured: str | None = None) -> None:
        self.path = path
        self.server = server
        self.configured = configured
        self.newly_pinned: str | None = None
        self._rotated_to: tuple[str, str] | None = None  # (next, old) seen in ``check``
        self._announced: str | None = None  # the next key told of, with a configured pin

    @property
    def pinned(self) -> str | None:
        return self.configured or _entries(self.path, self.server)[0]

    def check(self, fingerprint: str) -> None:
        """Raise ``ServerIdentityChanged`` unless ``fingerprint`` is the trusted one:
        the pin, or the next key the pinned server announced (the pin moves to it once
        the handshake has gone on: ``after_hello``)."""
        if self.configured is not None:
            expected: str | None = self.configured
            announced = None
        else:
            expected, announced = _entries(self.path, self.server)
        if expected is None:
            self._record(fingerprint)
            self.newly_pinned = fingerprint
            return
        if fingerprint == expected:
            return
        if announced is not None and fingerprint == announced:
            self._rotated_to = (fingerprint, expected)
            return
        source = "the configured fingerprint" if self.configured else str(self.path)
        raise ServerIdentityChanged(
            f"the server at {self.server} presented {fingerprint}, but {source} says "
            f"{expected}. Someone may be intercepting the connection; if the server's "
            f"key really changed (its operator runs 'eft-admin show-key'), check that "
            f"{fingerprint} is the one its operator gives, then remove its line from "
            f"{self.path}"
        )

    def after_hello(self, next_fingerprint: str | None) -> PinChange | None:
        """After the server's hello was read and checked: move the pin to the next key
        it presented, or record the next key it announced. The change, if any."""
        if self._rotated_to is not None:
            current, previous = self._rotated_to
            self._rotated_to = None
            self._rewrite(current, next_fingerprint)
            return PinChange("rotated", current, previous)
        if next_fingerprint is None:
            return None
        if self.configured is not None:  # not ours to change: said once a run
            if self._announced == next_fingerprint:
                return None
            self._announced = next_fingerprint
            return PinChange("announced", next_fingerprint, self.configured)
        pin, announced = _entries(self.path, self.server)
        if pin is None or next_fingerprint in (announced, pin):
            return None
        self._rewrite(pin, next_fingerprint)
        return PinChange("rotating", next_fingerprint, pin)

    def _record(self, fingerprint: str) -> None:
        make_private_directory(self.path.parent)
        with open(self.path, "a", encoding="ascii") as handle:
            handle.write(f"{self.server} {fingerprint}\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite(self, pin: str, next_fingerprint: str | None) -> None:
        """This server's lines become the pin (and the next key), in place of its first
        line; other servers' lines and comments are kept as they were."""
        kept: list[str] = []
        mine = [f"{self.server} {pin}"]
        if next_fingerprint is not None:
            mine.append(f"{self.server} {next_fingerprint} {NEXT_MARK}")
        for line in _lines(self.path):
            parts = line.split()
            if not line.startswith("#") and parts and parts[0] == self.server:
                kept += mine
                mine = []
            else:
                kept.append(line)
        kept += mine
        make_private_directory(self.path.parent)
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("".join(line + "\n" for line in kept))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        if os.name == "posix":
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
