"""The version-3 cryptography (spec section 5), on PyCryptodome.

RSA-1024 with e=17 so that the public key's DER is exactly 160 bytes; OAEP with SHA-1 to
carry a 32-byte AES key; AES-256-CBC with a zero IV and PKCS#7 over a whole file, applied
as a stream so that no side ever holds a file. Every function that draws randomness takes
``randfunc`` so tests can pin it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.PublicKey import RSA
from Crypto.Random import get_random_bytes
from Crypto.Util.strxor import strxor

from . import engines, errors
from .codes import AES_BLOCK_SIZE, AES_KEY_SIZE, ENCRYPTED_AES_KEY_SIZE, PUBLIC_KEY_SIZE
from .engines import BACKENDS, openssl_available

RandFunc = Callable[[int], bytes]

RSA_BITS = 1024
RSA_EXPONENT = 17
ZERO_IV = bytes(AES_BLOCK_SIZE)
#: Every valid public key starts with this: SEQUENCE, rsaEncryption OID, BIT STRING, n's tag.
PUBLIC_KEY_PREFIX = bytes.fromhex("30819d300d06092a864886f70d010101050003818b0030818702818100")


# --- RSA ------------------------------------------------------------------------


def generate_rsa_key(randfunc: RandFunc | None = None) -> RSA.RsaKey:
    """A fresh RSA-1024 key pair with the exponent 17 the wire format needs."""
    return RSA.generate(RSA_BITS, randfunc=randfunc, e=RSA_EXPONENT)


def public_key_der(key: RSA.RsaKey) -> bytes:
    """The 160-byte X.509 SubjectPublicKeyInfo DER sent in 826."""
    der: bytes = key.public_key().export_key(format="DER")
    if len(der) != PUBLIC_KEY_SIZE:
        raise ValueError(f"public key DER is {len(der)} bytes; only RSA-1024, e=17 fits 160")
    return der


def load_public_key(der: bytes) -> RSA.RsaKey:
    """Parse a peer's public key, accepting nothing but a canonical RSA-1024, e=17 DER."""
    if len(der) != PUBLIC_KEY_SIZE:
        raise errors.BadPublicKey(f"public key is {len(der)} bytes, not {PUBLIC_KEY_SIZE}")
    try:
        key = RSA.import_key(der)
    except (ValueError, IndexError, TypeError) as exc:
        raise errors.BadPublicKey(f"public key is not an RSA DER: {exc}") from None
    if key.has_private():
        raise errors.BadPublicKey("a private key was sent as the public key")
    if key.size_in_bits() != RSA_BITS or key.e != RSA_EXPONENT:
        raise errors.BadPublicKey(
            f"public key is RSA-{key.size_in_bits()} with e={key.e}; need RSA-1024, e=17"
        )
    if key.export_key(format="DER") != der:
        raise errors.BadPublicKey("public key DER is not in canonical form")
    return key


def export_private_key(key: RSA.RsaKey) -> str:
    """Base64 of the PKCS#8 DER, as Crypto++ clients write it (unwrapped; callers wrap)."""
    der: bytes = key.export_key(format="DER", pkcs=8)
    return base64.b64encode(der).decode("ascii")


def import_private_key(text: str) -> RSA.RsaKey:
    """Read a private key from Base64 (line breaks and surrounding blanks allowed)."""
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        key = RSA.import_key(der)
    except (ValueError, IndexError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a Base64 RSA private key: {exc}") from None
    if not key.has_private():
        raise ValueError("the key is a public key, not a private one")
    return key


# --- the AES key and its transport ----------------------------------------------


def new_aes_key(randfunc: RandFunc | None = None) -> bytes:
    return (randfunc or get_random_bytes)(AES_KEY_SIZE)


def wrap_aes_key(public_key: RSA.RsaKey, aes_key: bytes, randfunc: RandFunc | None = None) -> bytes:
    """RSAES-OAEP, SHA-1 and MGF1-SHA-1, empty label: 128 bytes."""
    cipher = PKCS1_OAEP.new(public_key, randfunc=randfunc)
    wrapped: bytes = cipher.encrypt(aes_key)
    return wrapped


def unwrap_aes_key(private_key: RSA.RsaKey, wrapped: bytes) -> bytes:
    """Recover the AES key of a 1602 or 1605; raises ``ResponseError`` if it is not one."""
    if len(wrapped) != ENCRYPTED_AES_KEY_SIZE:
        raise errors.ResponseError(f"wrapped AES key is {len(wrapped)} bytes, not 128")
    try:
        aes_key: bytes = PKCS1_OAEP.new(private_key).decrypt(wrapped)
    except ValueError:
        raise errors.ResponseError("the AES key was not encrypted to our public key") from None
    if len(aes_key) != AES_KEY_SIZE:
        raise errors.ResponseError(f"the AES key is {len(aes_key)} bytes, not 32")
    return aes_key


# --- streaming AES-256-CBC with PKCS#7 ------------------------------------------
#
# The bulk cipher has two interchangeable engines behind ``CbcEncryptor`` and
# ``CbcDecryptor``, which alone handle the stream and the padding:
#
# * PyCryptodome, always there. CBC encryption is sequential; decryption is not
#   (P[i] = D(C[i]) xor C[i-1]), so it runs as one ECB pass over the ciphertext, which
#   AES-NI pipelines, and one XOR with the ciphertext shifted by a block.
# * OpenSSL through the ``cryptography`` package, if installed: the faster of the two
#   per stream for CBC encryption on AES-NI machines.
#
# ``EFT_AES_BACKEND`` picks one for the process: ``auto`` (the default: OpenSSL both ways
# when it is installed, else PyCryptodome), ``pycryptodome`` or ``openssl``. Every choice
# produces the same bytes (tests/protocol/test_crypto_backends.py). OpenSSL decrypts CBC
# in parallel blocks too, about 3x cheaper than the ECB+XOR pass (docs/PERFORMANCE.md).

Bytes = bytes | bytearray | memoryview


def _openssl_cbc(key: bytes) -> Any:
    """An OpenSSL AES-256-CBC cipher object with the zero IV."""
    from cryptography.hazmat.primitives.ciphers import (  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
        Cipher,
        algorithms,
        modes,
    )

    return Cipher(algorithms.AES(key), modes.CBC(ZERO_IV))


def _check_aes_key(key: bytes) -> None:
    if len(key) != AES_KEY_SIZE:
        raise ValueError(f"AES-256 needs a 32-byte key, got {len(key)}")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown AES backend {backend!r}")
    if backend == "openssl" and not openssl_available():
        raise RuntimeError("the openssl backend needs the cryptography package")


class _EcbXorCbc:
    """CBC decryption, zero IV, whole blocks, as ECB plus a shifted XOR (PyCryptodome)."""

    def __init__(self, key: bytes) -> None:
        self._ecb = AES.new(key, AES.MODE_ECB)
        self._previous: bytes = ZERO_IV  # the last ciphertext block decrypted

    def decrypt_into(self, blocks: memoryview, out: memoryview) -> None:
        """The plaintext of ``blocks`` (one or more whole blocks) into ``out``, as long."""
        self._ecb.decrypt(blocks, output=out)
        first = out[:AES_BLOCK_SIZE]
        strxor(first, self._previous, output=first)
        if len(blocks) > AES_BLOCK_SIZE:
            rest = out[AES_BLOCK_SIZE:]
            strxor(rest, blocks[:-AES_BLOCK_SIZE], output=rest)
        self._previous = bytes(blocks[-AES_BLOCK_SIZE:])


class CbcEncryptor:
    """Encrypts a file given in pieces of any size; ``finalize`` adds the padding.

    ``update`` returns fresh bytes; ``update_into`` writes into the caller's buffer, which
    a sender reuses for the whole file (no allocation per piece).
    """

    def __init__(self, key: bytes, backend: str | None = None) -> None:
        _check_aes_key(key)
        self.backend = backend or engines.ENCRYPT_BACKEND
        _check_backend(self.backend)
        self._openssl: Any = None
        self._pycryptodome: Any = None
        if self.backend == "openssl":
            self._openssl = _openssl_cbc(key).encryptor()  # buffers partial blocks itself
        else:
            self._pycryptodome = AES.new(key, AES.MODE_CBC, iv=ZERO_IV)
        self._pending = b""  # fewer than 16 bytes waiting for a full block (PyCryptodome)
        self._length = 0  # plaintext bytes taken so far

    def update(self, plaintext: Bytes) -> bytes:
        if self._openssl is not None:
            self._length += len(plaintext)
            ciphertext: bytes = self._openssl.update(plaintext)
            return ciphertext
        out = bytearray(len(plaintext) + AES_BLOCK_SIZE)
        count = self.update_into(plaintext, out)
        return bytes(memoryview(out)[:count])

    def update_into(self, plaintext: Bytes, out: bytearray | memoryview) -> int:
        """Encrypt into ``out`` (room for ``len(plaintext) + 16`` bytes); how many were
        written: every whole block so far, the rest waits for more bytes or ``finalize``."""
        if len(out) < len(plaintext) + AES_BLOCK_SIZE:
            raise ValueError("the output buffer needs len(plaintext) + 16 bytes")
        self._length += len(plaintext)
        if self._openssl is not None:
            count: int = self._openssl.update_into(plaintext, out)
            return count
        data: Bytes = plaintext
        if self._pending:
            data = self._pending + bytes(plaintext)  # a copy only for unaligned pieces
        whole = len(data) - len(data) % AES_BLOCK_SIZE
        self._pending = bytes(data[whole:])
        if whole:
            with memoryview(data) as source, memoryview(out) as target:
                self._pycryptodome.encrypt(source[:whole], output=target[:whole])
        return whole

    def finalize(self) -> bytes:
        pad = AES_BLOCK_SIZE - self._length % AES_BLOCK_SIZE
        padding = bytes([pad]) * pad
        last: bytes
        if self._openssl is not None:
            last = self._openssl.update(padding)
        else:
            last = self._pycryptodome.encrypt(self._pending + padding)
        self._pending = b""
        self._length = 0
        return last


class CbcDecryptor:
    """Decrypts a ciphertext given in pieces; ``finalize`` checks and strips the padding.

    Every whole block is decrypted as soon as it arrives, but the last plaintext block is
    held back until ``finalize``: only then is it known to be the one with the padding.
    ``update`` returns fresh bytes; ``update_into`` writes into the caller's buffer.
    """

    def __init__(self, key: bytes, backend: str | None = None) -> None:
        _check_aes_key(key)
        self.backend = backend or engines.DECRYPT_BACKEND
        _check_backend(self.backend)
        self._openssl: Any = None
        self._engine: _EcbXorCbc | None = None
        if self.backend == "openssl":
            self._openssl = _openssl_cbc(key).decryptor()  # buffers partial blocks itself
        else:
            self._engine = _EcbXorCbc(key)
        self._partial = b""  # ciphertext short of a whole block (the PyCryptodome engine)
        self._held = b""  # the last plaintext block so far

    def update(self, ciphertext: Bytes) -> bytes:
        out = bytearray(len(ciphertext) + 2 * AES_BLOCK_SIZE)
        count = self.update_into(ciphertext, out)
        return bytes(memoryview(out)[:count])

    def update_into(self, ciphertext: Bytes, out: bytearray | memoryview) -> int:
        """Decrypt into ``out`` (room for ``len(ciphertext) + 32`` bytes); how many
        plaintext bytes are ready at its start."""
        if len(out) < len(ciphertext) + 2 * AES_BLOCK_SIZE:
            raise ValueError("the output buffer needs len(ciphertext) + 32 bytes")
        held = len(self._held)
        with memoryview(out) as view:
            view[:held] = self._held
            count: int
            if self._engine is None:
                count = held + self._openssl.update_into(ciphertext, view[held:])
            else:
                data: Bytes = ciphertext
                if self._partial:
                    data = self._partial + bytes(ciphertext)  # only for unaligned pieces
                whole = len(data) - len(data) % AES_BLOCK_SIZE
                self._partial = bytes(data[whole:])
                if whole:
                    with memoryview(data) as source:
                        self._engine.decrypt_into(source[:whole], view[held : held + whole])
                count = held + whole
            if count < AES_BLOCK_SIZE:
                return 0  # nothing new: the held block (if any) stays where it was
            self._held = bytes(view[count - AES_BLOCK_SIZE : count])
        return count - AES_BLOCK_SIZE

    def finalize(self) -> bytes:
        """The last plaintext bytes; raises ``BadPadding`` if the ciphertext was not valid."""
        if self._openssl is not None:
            try:
                self._openssl.finalize()
            except ValueError:  # bytes left over that do not make a block
                raise errors.BadPadding(
                    "ciphertext length is not a positive multiple of 16"
                ) from None
        block, self._held = self._held, b""
        if self._partial or len(block) != AES_BLOCK_SIZE:
            raise errors.BadPadding("ciphertext length is not a positive multiple of 16")
        pad = block[-1]
        if not 1 <= pad <= AES_BLOCK_SIZE or block[-pad:] != bytes([pad]) * pad:
            raise errors.BadPadding("invalid PKCS#7 padding")
        return block[:-pad]


def encrypt_file_bytes(key: bytes, plaintext: bytes) -> bytes:
    """One-shot encryption, for tests and small messages."""
    encryptor = CbcEncryptor(key)
    return encryptor.update(plaintext) + encryptor.finalize()


def decrypt_file_bytes(key: bytes, ciphertext: bytes) -> bytes:
    decryptor = CbcDecryptor(key)
    return decryptor.update(ciphertext) + decryptor.finalize()
