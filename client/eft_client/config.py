"""The client's local files (spec section 7): transfer.info, me.info and priv.key.

Readers are tolerant in the ways real files differ (C++ clients wrap the key at 72
characters and may pad lines with NULs); writers produce exactly the documented format,
atomically and readable by the owner only, since me.info holds a private key.
"""

from __future__ import annotations

import binascii
import os
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from eft_protocol import crypto
from eft_protocol.client_session import Identity
from eft_protocol.codes import CLIENT_ID_SIZE, MAX_USER_NAME

from .errors import ConfigError

TRANSFER_INFO = "transfer.info"
ME_INFO = "me.info"
PRIV_KEY = "priv.key"
KEY_LINE_WIDTH = 72  # as Crypto++'s Base64Encoder writes


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


def read_identity(path: Path) -> Identity | None:
    """me.info, or None if there is none yet."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    lines = [_clean(line) for line in lines]
    if len(lines) < 3:
        raise ConfigError(
            f"{path} must have a name, a client id and a key; delete it to register anew"
        )
    name, id_hex = lines[0], lines[1].lower()
    try:
        client_id = binascii.unhexlify(id_hex)
    except (binascii.Error, ValueError):
        client_id = b""
    if len(client_id) != CLIENT_ID_SIZE:
        raise ConfigError(f"{path} line 2 is not a 32-digit hex client id")
    try:
        key = crypto.import_private_key("".join(lines[2:]))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Identity(check_name(name), client_id, key)


def write_identity(directory: Path, identity: Identity) -> None:
    """me.info and priv.key, each replaced atomically, mode 0600."""
    key_text = "\n".join(
        textwrap.wrap(crypto.export_private_key(identity.private_key), KEY_LINE_WIDTH)
    )
    me_info = f"{identity.name}\n{identity.client_id.hex()}\n{key_text}\n"
    _write_private(directory / ME_INFO, me_info)
    _write_private(directory / PRIV_KEY, key_text + "\n")


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
