"""The version-4 identity: an X25519 key in ``me4.info`` and ``priv4.key``.

Kept apart from version 3's ``me.info`` (an RSA key, used by both our clients), so one
directory can hold both and neither version can clobber the other's identity.

    me4.info   line 1 name; line 2 client id (32 hex); line 3 the key
    priv4.key  the key line alone

The key line is ``x25519:`` + Base64 of the 32-byte private key, or, protected by a
passphrase, ``x25519-scrypt-n<log2 N>:`` + Base64(salt 16 | nonce 12 | ciphertext 32 |
tag 16): scrypt (N, r = 8, p = 1) turns the passphrase into a ChaCha20-Poly1305 key.
The cost is in the line, so a key sealed at any cost opens; ``x25519-scrypt:`` is the
first format, sealed at N = 2^15, still read. A key opened with its passphrase at a
lower cost than ``SCRYPT_LOG2_N`` is sealed again at it (``upgrade_needed``).

The cost, measured on the development machine (2 cores, busy): N = 2^15 took 61 ms,
2^16 117 ms, 2^17 242 ms, 2^18 491 ms (128 * r * N bytes of memory: 32, 64, 128,
256 MiB). The client opens its key once per run, so a quarter of a second is a budget a
person does not notice, and it makes each guess of a stolen file's passphrase 4 times
dearer than 2^15. 2^18 (age's choice) doubles that again but needs 256 MiB on every
start, too much for the small containers the lab runs its clients in: 2^17 it is.

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

from Crypto.Random import get_random_bytes

from eft_protocol.noise import KeyPair
from eft_protocol.v4.handshake import client_id_for

from .config import ME4_INFO, PRIV4_KEY, _write_private, check_name_matches, set_aside
from .errors import ConfigError

# ChaCha20-Poly1305 and scrypt are imported where a key is sealed or opened: loading them
# goes through PyCryptodome's C bindings (cffi parsing declarations when it is installed,
# 15 ms or more), which a key kept in plaintext never needs (docs/PERFORMANCE.md).

_PLAIN = "x25519:"
_SEALED_FIRST = "x25519-scrypt:"  # the first format: N = 2^15, not written any more
_SEALED = "x25519-scrypt-n"  # + log2 N + ":"
#: log2 of scrypt's N for keys sealed now (see the module's note for the measurement).
SCRYPT_LOG2_N = 17
_FIRST_LOG2_N = 15
#: A file names its own cost, so it must not name one that exhausts memory (2^22 is
#: 4 GiB) or a trivial one nobody wrote.
_LOG2_N_RANGE = range(_FIRST_LOG2_N, 21)


@dataclass(frozen=True)
class IdentityV4:
    name: str
    key: KeyPair

    @property
    def client_id(self) -> bytes:
        return client_id_for(self.key.public)


def _kdf(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    from Crypto.Protocol.KDF import scrypt  # noqa: PLC0415 - see the imports

    key = scrypt(passphrase, salt, 32, N=2**log2_n, r=8, p=1)
    assert isinstance(key, bytes)
    return key


def seal_key(private: bytes, passphrase: bytes | None, log2_n: int = SCRYPT_LOG2_N) -> str:
    if passphrase is None:
        return _PLAIN + base64.b64encode(private).decode()
    from Crypto.Cipher import ChaCha20_Poly1305  # noqa: PLC0415 - see the imports

    salt, nonce = get_random_bytes(16), get_random_bytes(12)
    cipher = ChaCha20_Poly1305.new(key=_kdf(passphrase, salt, log2_n), nonce=nonce)
    ciphertext, tag = cipher.encrypt_and_digest(private)
    blob = base64.b64encode(salt + nonce + ciphertext + tag).decode()
    if log2_n == _FIRST_LOG2_N:
        return _SEALED_FIRST + blob  # what the first format's readers can open
    return f"{_SEALED}{log2_n}:{blob}"


def sealed_cost(line: str) -> int | None:
    """log2 N of a sealed key line; None for a key in plaintext."""
    if line.startswith(_SEALED_FIRST):
        return _FIRST_LOG2_N
    if line.startswith(_SEALED):
        digits = line[len(_SEALED) :].split(":", 1)[0]
        return int(digits) if digits.isdigit() else -1
    return None


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
        elif (log2_n := sealed_cost(line)) is not None:
            if log2_n not in _LOG2_N_RANGE:
                raise ConfigError(
                    f"{where}: scrypt cost 2^{log2_n} is outside 2^15..2^20; "
                    "the key line is damaged"
                )
            if passphrase is None:
                passphrase = _ask_passphrase(where)
            blob = base64.b64decode(line.split(":", 1)[1], validate=True)
            if len(blob) != 16 + 12 + 32 + 16:
                raise ConfigError(f"{where}: the protected key has the wrong length")
            salt, nonce, ciphertext, tag = blob[:16], blob[16:28], blob[28:60], blob[60:]
            from Crypto.Cipher import ChaCha20_Poly1305  # noqa: PLC0415 - see the imports

            cipher = ChaCha20_Poly1305.new(key=_kdf(passphrase, salt, log2_n), nonce=nonce)
            try:
                private = cipher.decrypt_and_verify(ciphertext, tag)
            except ValueError:
                raise ConfigError(f"{where}: wrong passphrase") from None
        else:
            raise ConfigError(
                f"{where}: line 3 must start with x25519: or x25519-scrypt(-n<cost>):"
            )
    except binascii.Error:
        raise ConfigError(f"{where}: the key is not Base64") from None
    if len(private) != 32:
        raise ConfigError(f"{where}: an X25519 key is 32 bytes")
    return bytes(private)


@dataclass(frozen=True)
class StoredIdentity:
    identity: IdentityV4
    #: What the file's key line needs: "protect" (in plaintext, but a passphrase was
    #: given), "reseal" (sealed at a lower cost than now), or None.
    upgrade_needed: str | None


def read_identity_v4(directory: Path, passphrase: bytes | None) -> IdentityV4 | None:
    stored = read_stored_identity_v4(directory, passphrase)
    return None if stored is None else stored.identity


def read_stored_identity_v4(directory: Path, passphrase: bytes | None) -> StoredIdentity | None:
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
    cost = sealed_cost(lines[2])
    upgrade = None
    if cost is None and passphrase is not None:
        upgrade = "protect"
    elif cost is not None and cost < SCRYPT_LOG2_N and passphrase is not None:
        upgrade = "reseal"
    return StoredIdentity(identity, upgrade)


def protect_identity_v4(
    directory: Path, stored: StoredIdentity, passphrase: bytes | None
) -> str | None:
    """Seal a key left in plaintext when a passphrase is given (the user asked for a
    protected key: leaving it readable and exiting 0 would lie), or sealed at an older,
    cheaper cost. Both files are rewritten atomically (0600). Returns what was done."""
    if stored.upgrade_needed is None:
        return None
    if passphrase is None:
        return None  # typed at a terminal: kept as it is rather than held to seal again
    write_identity_v4(directory, stored.identity, passphrase)
    return stored.upgrade_needed


@dataclass(frozen=True)
class RunIdentity:
    """The identity one version-4 run uses."""

    identity: IdentityV4
    #: Made for this run: saved before the message that binds it (docs/IDENTITY.md).
    new: bool
    #: What ``protect_identity_v4`` did to the stored key, if anything.
    protected: str | None = None


def identity_for_run(
    directory: Path, name: str, passphrase: bytes | None, *, re_register: bool
) -> RunIdentity:
    """The stored identity if it is ``name``'s, else a new one (not saved yet)."""
    stored = read_stored_identity_v4(directory, passphrase)
    if stored is not None and not check_name_matches(
        stored.identity.name, name, directory / ME4_INFO, re_register
    ):
        stored = None  # --re-register: a new key, the old files set aside when it is saved
    if stored is None:
        return RunIdentity(IdentityV4(name, KeyPair.generate()), new=True)
    # A passphrase given for a key in plaintext (or sealed at the old, cheaper cost):
    # seal it now, and say so, rather than leave it readable and exit 0.
    protected = protect_identity_v4(directory, stored, passphrase)
    return RunIdentity(stored.identity, new=False, protected=protected)


def write_identity_v4(
    directory: Path, identity: IdentityV4, passphrase: bytes | None
) -> list[Path]:
    """me4.info and priv4.key, atomically, 0600. An identity already there with another
    client id (or unreadable) is set aside first, never overwritten (docs/IDENTITY.md);
    returns where it went."""
    try:
        lines = (directory / ME4_INFO).read_text(encoding="ascii").splitlines()
        replaced = len(lines) < 2 or lines[1].strip().lower() != identity.client_id.hex()
    except FileNotFoundError:
        replaced = False
    except (OSError, UnicodeDecodeError):
        replaced = True
    moved = set_aside(directory, (ME4_INFO, PRIV4_KEY)) if replaced else []
    key_line = seal_key(identity.key.private, passphrase)
    _write_private(
        directory / ME4_INFO, f"{identity.name}\n{identity.client_id.hex()}\n{key_line}\n"
    )
    _write_private(directory / PRIV4_KEY, key_line + "\n")
    return moved


def read_passphrase(path: Path | None, environ: dict[str, str] | None) -> bytes | None:
    if path is not None:
        try:
            return path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read the passphrase file {path}: {exc}") from None
    value = (environ or {}).get("EFT_PASSPHRASE")
    return value.encode() if value else None
