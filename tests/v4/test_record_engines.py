"""Both AEAD engines behind ``RecordCipher`` give the same records and refuse the same
forgeries. The frozen scenario (test_v4_vectors.py) runs on the default engine; this
pins the other one to it."""

from __future__ import annotations

import random

import pytest

from eft_protocol import engines
from eft_protocol.v4 import records as rec

ENGINES = ["pycryptodome"] + (["openssl"] if engines.openssl_available() else [])
HEADER = bytes(range(23))


def records(engine: str, key: bytes, plaintexts: list[bytes]) -> list[bytes]:
    cipher = rec.RecordCipher(key, engine)
    return [cipher.seal(HEADER, plaintext) for plaintext in plaintexts]


def test_the_engines_seal_the_same_bytes_and_open_each_other() -> None:
    rng = random.Random(5)
    key = rng.randbytes(32)
    plaintexts = [b"", b"x", rng.randbytes(1000), rng.randbytes(rec.MAX_PLAINTEXT)]
    sealed = {engine: records(engine, key, plaintexts) for engine in ENGINES}
    reference = sealed["pycryptodome"]
    assert all(found == reference for found in sealed.values())
    for engine in ENGINES:
        cipher = rec.RecordCipher(key, engine)
        for plaintext, record in zip(plaintexts, reference, strict=True):
            assert cipher.open(HEADER, memoryview(record)) == plaintext
        assert cipher.counter == len(plaintexts)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("where", ["header", "ciphertext", "tag", "nonce"])
def test_each_engine_refuses_a_forgery(engine: str, where: str) -> None:
    key = bytes(32)
    record = bytearray(records("pycryptodome", key, [b"attack at dawn"])[0])
    header = bytearray(HEADER)
    cipher = rec.RecordCipher(key, engine)
    if where == "header":
        header[0] ^= 1
    elif where == "ciphertext":
        record[0] ^= 1
    elif where == "tag":
        record[-1] ^= 1
    else:
        cipher.counter = 1  # the record was sealed as number 0
    with pytest.raises(rec.RecordError):
        cipher.open(bytes(header), bytes(record))
    with pytest.raises(rec.RecordError):
        cipher.open(HEADER, b"short")


@pytest.mark.parametrize("engine", ENGINES)
def test_sealing_into_a_reused_buffer_gives_the_same_records(engine: str) -> None:
    """``seal_into`` (the client's file chunks) is ``seal`` without a new object, and
    ``open_into`` (the server's, into a buffer it lends) is ``open`` into that buffer."""
    rng = random.Random(7)
    key = rng.randbytes(32)
    plaintexts = [b"", b"x", rng.randbytes(1000), rng.randbytes(rec.MAX_PLAINTEXT), b"tail"]
    reference = records("pycryptodome", key, plaintexts)
    sealer, opener = rec.RecordCipher(key, engine), rec.RecordCipher(key, engine)
    out = bytearray(rec.MAX_PLAINTEXT + rec.TAG_SIZE)
    opened = bytearray(rec.MAX_PLAINTEXT)
    for plaintext, record in zip(plaintexts, reference, strict=True):
        sealed = sealer.seal_into(HEADER, plaintext, out)
        assert bytes(sealed) == record
        view = opener.open_into(HEADER, sealed, opened)
        assert bytes(view) == plaintext and (not plaintext or view.obj is opened)
    assert sealer.counter == opener.counter == len(plaintexts)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("where", ["header", "ciphertext", "tag"])
def test_opening_into_a_lent_buffer_refuses_a_forgery(engine: str, where: str) -> None:
    key = bytes(32)
    record = bytearray(records("pycryptodome", key, [bytes(100_000)])[0])
    header = bytearray(HEADER)
    if where == "header":
        header[0] ^= 1
    elif where == "ciphertext":
        record[0] ^= 1
    else:
        record[-1] ^= 1
    cipher = rec.RecordCipher(key, engine)
    with pytest.raises(rec.RecordError):
        cipher.open_into(bytes(header), bytes(record), bytearray(len(record)))
    with pytest.raises(rec.RecordError):
        cipher.open_into(HEADER, b"short", bytearray(16))
    with pytest.raises(ValueError, match="smaller"):  # a driver's bug, never a peer's
        cipher.open_into(HEADER, bytes(record), bytearray(len(record) - rec.TAG_SIZE - 1))
    assert cipher.counter == 0


class _AesGcmBefore45:
    """cryptography's AESGCM as releases before 45 had it: no ``encrypt_into`` or
    ``decrypt_into`` (pyproject allows 42), so the reused-buffer paths copy instead."""

    def __init__(self, aead: object) -> None:
        self._aead = aead

    def encrypt(self, nonce: bytes, data: object, associated: object) -> bytes:
        return self._aead.encrypt(nonce, data, associated)  # type: ignore[attr-defined, no-any-return]

    def decrypt(self, nonce: bytes, data: object, associated: object) -> bytes:
        return self._aead.decrypt(nonce, data, associated)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.skipif("openssl" not in ENGINES, reason="cryptography is not installed")
def test_reused_buffers_without_the_into_methods_of_newer_cryptography() -> None:
    rng = random.Random(11)
    key = rng.randbytes(32)
    plaintexts = [b"", rng.randbytes(1000), rng.randbytes(rec.MAX_PLAINTEXT)]
    reference = records("pycryptodome", key, plaintexts)
    sealer, opener = rec.RecordCipher(key, "openssl"), rec.RecordCipher(key, "openssl")
    for cipher in (sealer, opener):
        cipher._openssl = _AesGcmBefore45(cipher._openssl)
        assert not hasattr(cipher._openssl, "encrypt_into")
    out = bytearray(rec.MAX_PLAINTEXT + rec.TAG_SIZE)
    for plaintext, record in zip(plaintexts, reference, strict=True):
        sealed = sealer.seal_into(HEADER, plaintext, out)
        assert bytes(sealed) == record
        assert bytes(opener.open_into(HEADER, sealed, bytearray(len(sealed)))) == plaintext
    late = rec.RecordCipher(key, "openssl")  # counter 0: reference[0]'s number
    late._openssl = _AesGcmBefore45(late._openssl)
    forged = bytearray(reference[0])
    forged[-1] ^= 1
    with pytest.raises(rec.RecordError):
        late.open_into(HEADER, bytes(forged), bytearray(len(forged)))
    assert bytes(late.open_into(HEADER, reference[0], bytearray(rec.TAG_SIZE))) == plaintexts[0]
