"""The client's local files (spec section 7): transfer.info here, the names of all three,
and the private, atomic writer that me.info and priv.key go through (``identity.py``,
``identity_v4.py``).

Readers are tolerant in the ways real files differ (C++ clients wrap the key at 72
characters and may pad lines with NULs); writers produce exactly the documented format,
atomically and readable by the owner only, since me.info holds a private key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eft_protocol.codes import MAX_USER_NAME

from .errors import ConfigError

TRANSFER_INFO = "transfer.info"
ME_INFO = "me.info"
PRIV_KEY = "priv.key"


@dataclass(frozen=True)
class TransferInfo:
    host: str | None = None
    port: int | None = None
    name: str | None = None
    file: Path | None = None
    fingerprint: str | None = None  # line 4: the server's version-4 key, if configured


def _clean(line: str) -> str:
    return line.rstrip("\x00 \r\n\t")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6-address]:port``."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{port_text!r} in {text!r} is not a port from 1 to 65535")
    return host, int(port_text)


def check_name(name: str) -> str:
    if not name:
        raise ConfigError("the user name is empty")
    if len(name) > MAX_USER_NAME:
        raise ConfigError(f"the user name is {len(name)} characters; at most {MAX_USER_NAME}")
    if not (name.isascii() and name.isprintable()):
        raise ConfigError(f"the user name {name!r} must be printable ASCII")
    return name


def read_transfer_info(path: Path) -> TransferInfo:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return TransferInfo()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    lines = [_clean(line) for line in lines]
    host = port = name = file = None
    if lines and lines[0]:
        try:
            host, port = parse_address(lines[0])
        except ConfigError as exc:
            raise ConfigError(f"{path} line 1: {exc}") from None
    if len(lines) > 1 and lines[1]:
        try:
            name = check_name(lines[1])
        except ConfigError as exc:
            raise ConfigError(f"{path} line 2: {exc}") from None
    if len(lines) > 2 and lines[2]:
        file = Path(lines[2])
    fingerprint = None
    if len(lines) > 3 and lines[3]:
        if not lines[3].startswith("SHA256:"):
            raise ConfigError(f"{path} line 4: a server fingerprint starts with SHA256:")
        fingerprint = lines[3]
    return TransferInfo(host, port, name, file, fingerprint)


def _write_private(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc}") from None
