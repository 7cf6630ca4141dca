"""The version-4 identity: an X25519 key in ``me4.info`` and ``priv4.key``.

Kept apart from version 3's ``me.info`` (an RSA key, used by both our clients), so one
directory can hold both and neither version can clobber the other's identity.

    me4.info   line 1 name; line 2 client id (32 hex); line 3 the key
    priv4.key  the key line alone

The key line is ``x25519:`` + Base64 of the 32-byte private key, or, protected by a
passphrase, ``x25519-scrypt:`` + Base64(salt 16 | nonce 12 | ciphertext 32 | tag 16):
scrypt (N = 2^15, r = 8, p = 1) turns the passphrase into a ChaCha20-Poly1305 key.
The passphrase comes from a file or the environment, never from the command line
(other users can read a process's arguments).
"""

from __future__ import annotations

import base64
import binascii
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

from Crypto.Cipher import ChaCha20_Poly1305
from Crypto.Protocol.KDF import scrypt
from Crypto.Random import get_random_bytes

from eft_protocol.noise import KeyPair
from eft_protocol.v4.handshake import client_id_for

from .config import _write_private
from .errors import ConfigError

ME4_INFO = "me4.info"
PRIV4_KEY = "priv4.key"
_PLAIN, _SEALED = "x25519:", "x25519-scrypt:"
_SCRYPT = {"N": 2**15, "r": 8, "p": 1}


@dataclass(frozen=True)
class IdentityV4:
    name: str
    key: KeyPair

    @property
    def client_id(self) -> bytes:
        return client_id_for(self.key.public)


def _kdf(passphrase: bytes, salt: bytes) -> bytes:
    key = scrypt(passphrase, salt, 32, **_SCRYPT)
    assert isinstance(key, bytes)
    return key


def seal_key(private: bytes, passphrase: bytes | None) -> str:
    if passphrase is None:
        return _PLAIN + base64.b64encode(private).decode()
    salt, nonce = get_random_bytes(16), get_random_bytes(12)
    cipher = ChaCha20_Poly1305.new(key=_kdf(passphrase, salt), nonce=nonce)
    ciphertext, tag = cipher.encrypt_and_digest(private)
    return _SEALED + base64.b64encode(salt + nonce + ciphertext + tag).decode()


def _ask_passphrase(where: Path) -> bytes:
    """From the person at the terminal, as ssh asks; with no terminal, say what to give."""
    if not sys.stdin.isatty():
        raise ConfigError(
            f"{where} is protected by a passphrase: give --passphrase-file or set "
            "EFT_PASSPHRASE (or run on a terminal to be asked)"
        )
    try:
        answer = getpass.getpass(f"passphrase for {where}: ")
    except EOFError:
        raise ConfigError(f"no passphrase given for {where}") from None
    return answer.encode()


def open_key(line: str, passphrase: bytes | None, where: Path) -> bytes:
    try:
        if line.startswith(_PLAIN):
            private = base64.b64decode(line[len(_PLAIN) :], validate=True)
        elif line.startswith(_SEALED):
            if passphrase is None:
                passphrase = _ask_passphrase(where)
            blob = base64.b64decode(line[len(_SEALED) :], validate=True)
            if len(blob) != 16 + 12 + 32 + 16:
                raise ConfigError(f"{where}: the protected key has the wrong length")
            salt, nonce, ciphertext, tag = blob[:16], blob[16:28], blob[28:60], blob[60:]
            cipher = ChaCha20_Poly1305.new(key=_kdf(passphrase, salt), nonce=nonce)
            try:
                private = cipher.decrypt_and_verify(ciphertext, tag)
            except ValueError:
                raise ConfigError(f"{where}: wrong passphrase") from None
        else:
            raise ConfigError(f"{where}: line 3 must start with x25519: or x25519-scrypt:")
    except binascii.Error:
        raise ConfigError(f"{where}: the key is not Base64") from None
    if len(private) != 32:
        raise ConfigError(f"{where}: an X25519 key is 32 bytes")
    return bytes(private)


def read_identity_v4(directory: Path, passphrase: bytes | None) -> IdentityV4 | None:
    path = directory / ME4_INFO
    try:
        lines = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if len(lines) < 3:
        raise ConfigError(f"{path} must hold a name, a client id and a key")
    identity = IdentityV4(lines[0], KeyPair.from_private(open_key(lines[2], passphrase, path)))
    if identity.client_id.hex() != lines[1].lower():
        raise ConfigError(f"{path}: the client id does not belong to the key")
    return identity


def write_identity_v4(directory: Path, identity: IdentityV4, passphrase: bytes | None) -> None:
    key_line = seal_key(identity.key.private, passphrase)
    _write_private(
        directory / ME4_INFO, f"{identity.name}\n{identity.client_id.hex()}\n{key_line}\n"
    )
    _write_private(directory / PRIV4_KEY, key_line + "\n")


def read_passphrase(path: Path | None, environ: dict[str, str] | None) -> bytes | None:
    if path is not None:
        try:
            return path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read the passphrase file {path}: {exc}") from None
    value = (environ or {}).get("EFT_PASSPHRASE")
    return value.encode() if value else None
