"""The Noise XX handshake (Noise revision 34) for version 4, with no I/O.

One pattern, ``XX``, over X25519 and SHA-256, with AES-256-GCM (what version 4 speaks
since its revision 2, ``Noise_XX_25519_AESGCM_SHA256``) or ChaCha20-Poly1305 (revision
1's, kept so the public test vectors of both can be checked). The
code follows the specification's objects one to one: ``CipherState``,
``SymmetricState`` and ``HandshakeState``, so that a reader can hold it against the
spec's section 5.

    XX:
      -> e
      <- e, ee, s, es
      -> s, se
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from Crypto.Random import get_random_bytes

# OpenSSL's X25519 and AEADs through ``cryptography``: a responder's whole handshake
# (one key generation, three DH, four AEAD calls) costs about a fifth of PyCryptodome's,
# which matters because anyone may send message 1 (docs/SECURITY.md, issue 18).
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

DHLEN = 32
HASHLEN = 32
TAGLEN = 16
MAX_MESSAGE = 65535
MAX_NONCE = 2**64 - 1  # reserved by the spec: a cipher state must never use it


class NoiseError(Exception):
    """A message failed to authenticate or was malformed: abort the handshake or session."""


# --- primitives ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: bytes
    # The parsed key, kept so that a DH does not parse the bytes again (about 60 us).
    parsed: X25519PrivateKey | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        if len(private) != DHLEN:
            raise NoiseError("a Curve25519 private key is 32 bytes")
        key = X25519PrivateKey.from_private_bytes(private)
        return cls(private, key.public_key().public_bytes_raw(), key)

    @classmethod
    def generate(cls, randfunc: Callable[[int], bytes] | None = None) -> KeyPair:
        return cls.from_private((randfunc or get_random_bytes)(DHLEN))


def dh(key_pair: KeyPair, public: bytes) -> bytes:
    """X25519; a low-order peer key (all-zero output) is an error, as the spec allows."""
    if len(public) != DHLEN:
        raise NoiseError("a Curve25519 public key is 32 bytes")
    try:
        private = key_pair.parsed or X25519PrivateKey.from_private_bytes(key_pair.private)
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # OpenSSL refuses an all-zero result (a low-order key)
        raise NoiseError(f"bad Curve25519 public key: {exc}") from None
    if shared == bytes(DHLEN):
        raise NoiseError("Diffie-Hellman output is zero (low-order key)")
    return shared


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hkdf(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    # hmac.digest: the one-shot C path, a third of hmac.new's cost per call.
    temp = hmac.digest(chaining_key, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    return out1, out2


def _chachapoly_nonce(n: int) -> bytes:
    return bytes(4) + n.to_bytes(8, "little")


def _aesgcm_nonce(n: int) -> bytes:
    return bytes(4) + n.to_bytes(8, "big")  # the spec's AESGCM nonce is big-endian


class CipherState:
    """An AEAD key and its nonce counter; without a key it passes data through."""

    def __init__(self, cipher: str = "AESGCM") -> None:
        self.cipher = cipher
        self.key: bytes | None = None
        self.n = 0
        self._aead: ChaCha20Poly1305 | AESGCM | None = None
        self._nonce = _chachapoly_nonce if cipher == "ChaChaPoly" else _aesgcm_nonce

    def initialize_key(self, key: bytes | None) -> None:
        self.key, self.n = key, 0
        if key is None:
            self._aead = None
        else:
            self._aead = ChaCha20Poly1305(key) if self.cipher == "ChaChaPoly" else AESGCM(key)

    @property
    def has_key(self) -> bool:
        return self.key is not None

    def _next_nonce(self) -> bytes:
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce exhausted: this session must end")
        return self._nonce(self.n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(self._next_nonce(), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        if len(ciphertext) < TAGLEN:
            raise NoiseError("ciphertext shorter than its tag")
        try:
            plaintext = self._aead.decrypt(self._next_nonce(), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("authentication failed") from None
        self.n += 1
        return plaintext


class SymmetricState:
    def __init__(self, protocol_name: bytes, cipher: str) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name + bytes(HASHLEN - len(protocol_name))
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher_state = CipherState(cipher)
        self._cipher = cipher

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = _hkdf(self.ck, ikm)
        self.cipher_state.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = _hkdf(self.ck, b"")
        c1, c2 = CipherState(self._cipher), CipherState(self._cipher)
        c1.initialize_key(k1)
        c2.initialize_key(k2)
        return c1, c2


class HandshakeState:
    """Noise XX for one side. Call write/read in turn; after message 3, ``split``."""

    def __init__(
        self,
        *,
        initiator: bool,
        static: KeyPair,
        prologue: bytes,
        cipher: str = "AESGCM",
        ephemeral: KeyPair | None = None,
        randfunc: Callable[[int], bytes] | None = None,
    ) -> None:
        name = f"Noise_XX_25519_{cipher}_SHA256".encode()
        self.symmetric = SymmetricState(name, cipher)
        self.symmetric.mix_hash(prologue)
        self.initiator = initiator
        self.s = static
        self.e = ephemeral
        self.rs: bytes | None = None  # the peer's static key, once learnt
        self.re: bytes | None = None
        self._randfunc = randfunc
        self.message = 0  # messages processed so far (0 to 3)

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.h

    @property
    def complete(self) -> bool:
        return self.message == 3

    def _expect(self, writing: bool) -> None:
        initiator_writes = self.message in (0, 2)
        if self.complete or writing != (initiator_writes == self.initiator):
            raise NoiseError("message out of turn")

    def write_message(self, payload: bytes = b"") -> bytes:
        self._expect(writing=True)
        sym, out = self.symmetric, bytearray()
        if self.message in (0, 1):  # -> e   /   <- e, ee, s, es
            if self.e is None:
                self.e = KeyPair.generate(self._randfunc)
            out += self.e.public
            sym.mix_hash(self.e.public)
            if self.message == 1:
                assert self.re is not None
                sym.mix_key(dh(self.e, self.re))
                out += sym.encrypt_and_hash(self.s.public)
                sym.mix_key(dh(self.s, self.re))
        else:  # -> s, se
            assert self.re is not None
            out += sym.encrypt_and_hash(self.s.public)
            sym.mix_key(dh(self.s, self.re))
        out += sym.encrypt_and_hash(payload)
        self.message += 1
        if len(out) > MAX_MESSAGE:
            raise NoiseError("handshake message over 65535 bytes")
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        self._expect(writing=False)
        sym, rest = self.symmetric, message
        if self.message in (0, 1):
            if len(rest) < DHLEN:
                raise NoiseError("handshake message too short")
            self.re, rest = rest[:DHLEN], rest[DHLEN:]
            sym.mix_hash(self.re)
            if self.message == 1:  # <- e, ee, s, es (we are the initiator)
                assert self.e is not None
                sym.mix_key(dh(self.e, self.re))
                self.rs, rest = self._read_static(rest)
                sym.mix_key(dh(self.e, self.rs))
        else:  # -> s, se (we are the responder)
            assert self.e is not None
            self.rs, rest = self._read_static(rest)
            sym.mix_key(dh(self.e, self.rs))
        payload = sym.decrypt_and_hash(rest)
        self.message += 1
        return payload

    def _read_static(self, data: bytes) -> tuple[bytes, bytes]:
        size = DHLEN + TAGLEN if self.symmetric.cipher_state.has_key else DHLEN
        if len(data) < size:
            raise NoiseError("handshake message too short for a static key")
        return self.symmetric.decrypt_and_hash(data[:size]), data[size:]

    def split(self) -> tuple[CipherState, CipherState]:
        """(sending, receiving) cipher states for this side."""
        if not self.complete:
            raise NoiseError("the handshake is not complete")
        c1, c2 = self.symmetric.split()
        return (c1, c2) if self.initiator else (c2, c1)
