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

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.PublicKey import RSA
from Crypto.Random import get_random_bytes

from . import errors
from .codes import AES_BLOCK_SIZE, AES_KEY_SIZE, ENCRYPTED_AES_KEY_SIZE, PUBLIC_KEY_SIZE

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


def _check_aes_key(key: bytes) -> None:
    if len(key) != AES_KEY_SIZE:
        raise ValueError(f"AES-256 needs a 32-byte key, got {len(key)}")


class CbcEncryptor:
    """Encrypts a file given in pieces of any size; ``finalize`` adds the padding."""

    def __init__(self, key: bytes) -> None:
        _check_aes_key(key)
        self._cipher = AES.new(key, AES.MODE_CBC, iv=ZERO_IV)
        self._pending = b""  # fewer than 16 bytes waiting for a full block

    def update(self, plaintext: bytes) -> bytes:
        data = self._pending + plaintext if self._pending else plaintext
        cut = len(data) - len(data) % AES_BLOCK_SIZE
        self._pending = bytes(data[cut:])
        if not cut:
            return b""
        encrypted: bytes = self._cipher.encrypt(data[:cut] if cut != len(data) else data)
        return encrypted

    def finalize(self) -> bytes:
        pad = AES_BLOCK_SIZE - len(self._pending)
        last: bytes = self._cipher.encrypt(self._pending + bytes([pad]) * pad)
        self._pending = b""
        return last


class CbcDecryptor:
    """Decrypts a ciphertext given in pieces; ``finalize`` checks and strips the padding.

    The last block is always held back until ``finalize``, because only then is it known
    to be the one that carries the padding.
    """

    def __init__(self, key: bytes) -> None:
        _check_aes_key(key)
        self._cipher = AES.new(key, AES.MODE_CBC, iv=ZERO_IV)
        self._pending = b""  # at most one block plus a partial one

    def update(self, ciphertext: bytes) -> bytes:
        data = self._pending + ciphertext if self._pending else ciphertext
        usable = len(data) - len(data) % AES_BLOCK_SIZE
        if usable == len(data):
            usable -= AES_BLOCK_SIZE  # keep one whole block back for the padding check
        if usable <= 0:
            self._pending = bytes(data)
            return b""
        self._pending = bytes(data[usable:])
        decrypted: bytes = self._cipher.decrypt(data[:usable])
        return decrypted

    def finalize(self) -> bytes:
        """The last plaintext bytes; raises ``BadPadding`` if the ciphertext was not valid."""
        if len(self._pending) != AES_BLOCK_SIZE:
            raise errors.BadPadding("ciphertext length is not a positive multiple of 16")
        block: bytes = self._cipher.decrypt(self._pending)
        self._pending = b""
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
