"""Version 3's identity on disk: me.info (name, client id, RSA key) and priv.key, and
the rules of docs/IDENTITY.md both versions share: an identity is never overwritten
(set aside instead) and never given up on an unauthenticated answer.

Kept apart from ``config.py`` so that a version-4 client never loads RSA.
"""

from __future__ import annotations

import binascii
import textwrap
from pathlib import Path

from eft_protocol import crypto
from eft_protocol.client_session import Identity
from eft_protocol.codes import CLIENT_ID_SIZE

from .config import (
    ME_INFO,
    PRIV_KEY,
    _clean,
    _write_private,
    check_name,
    set_aside,
)
from .errors import ConfigError, IdentityConflict

KEY_LINE_WIDTH = 72  # as Crypto++'s Base64Encoder writes


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


def denied_identity(path: Path, client_id: bytes) -> IdentityConflict:
    """A version-3 1606 to a client that has an identity: anyone on the path can send
    one (EFT-19), so the identity is kept and the user decides."""
    return IdentityConflict(
        f"the server denied the reconnection of client id {client_id.hex()} (1606). "
        f"{path} is kept unchanged: a 1606 is not authenticated in version 3, and "
        "registering anew would lose this identity for a forged answer"
    )


def write_identity(directory: Path, identity: Identity) -> list[Path]:
    """me.info and priv.key, each replaced atomically, mode 0600. An identity already
    there with another client id is first set aside (``me.info.replaced-<time>``),
    never overwritten; returns where it went."""
    try:
        old = read_identity(directory / ME_INFO)
        replaced = old is not None and old.client_id != identity.client_id
    except ConfigError:  # unreadable: kept aside all the same, the user may mend it
        replaced = True
    moved = set_aside(directory, (ME_INFO, PRIV_KEY)) if replaced else []
    key_text = "\n".join(
        textwrap.wrap(crypto.export_private_key(identity.private_key), KEY_LINE_WIDTH)
    )
    me_info = f"{identity.name}\n{identity.client_id.hex()}\n{key_text}\n"
    _write_private(directory / ME_INFO, me_info)
    _write_private(directory / PRIV_KEY, key_text + "\n")
    return moved
