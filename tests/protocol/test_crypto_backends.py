"""Every engine behind ``CbcEncryptor``/``CbcDecryptor`` gives the reference bytes.

The reference is PyCryptodome's own AES-256-CBC (zero IV, PKCS#7) in one call. The
engines: PyCryptodome (CBC to encrypt, ECB plus a shifted XOR to decrypt) and, when the
``cryptography`` package is installed, OpenSSL. No timings here: speed is ``make bench``.
"""

from __future__ import annotations

import itertools
import random

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad
from hypothesis import given, settings
from hypothesis import strategies as st

from eft_protocol import crypto, engines, errors
from tests.support.examples import examples

SPEC_KEY = bytes(range(32))
#: Spec section 9: AES-256-CBC, zero IV, PKCS#7, key 0x00..0x1F.
SPEC_VECTORS = [
    (b"", "9f3b7504926f8bd36e3118e903a4cd4a"),
    (b"hello world\n", "0b2c878e3b34b315443e0f44b3091802"),
    (b"A" * 16, "72ada3664473c418c917a496fcc37066ab5fa98b9d6a251e66dd7a7f9f21714a"),
]

BACKENDS = [
    pytest.param("pycryptodome"),
    pytest.param(
        "openssl",
        marks=pytest.mark.skipif(
            not engines.openssl_available(), reason="the cryptography package is not installed"
        ),
    ),
]
AVAILABLE = [b for b in engines.BACKENDS if b == "pycryptodome" or engines.openssl_available()]


def reference_encrypt(key: bytes, plaintext: bytes) -> bytes:
    out: bytes = AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(pad(plaintext, 16))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def encrypt(backend: str, key: bytes, pieces: list[bytes]) -> bytes:
    encryptor = crypto.CbcEncryptor(key, backend)
    return b"".join(encryptor.update(piece) for piece in pieces) + encryptor.finalize()


def decrypt(backend: str, key: bytes, pieces: list[bytes]) -> bytes:
    decryptor = crypto.CbcDecryptor(key, backend)
    return b"".join(decryptor.update(piece) for piece in pieces) + decryptor.finalize()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("plaintext", "expected"), SPEC_VECTORS)
def test_the_spec_vectors(backend: str, plaintext: bytes, expected: str) -> None:
    ciphertext = bytes.fromhex(expected)
    assert encrypt(backend, SPEC_KEY, [plaintext]) == ciphertext
    assert decrypt(backend, SPEC_KEY, [ciphertext]) == plaintext
    # One byte at a time: every pending-block path at once.
    assert encrypt(backend, SPEC_KEY, [bytes([b]) for b in plaintext]) == ciphertext
    assert decrypt(backend, SPEC_KEY, [bytes([b]) for b in ciphertext]) == plaintext


@settings(max_examples=examples(150), deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    plaintext=st.binary(max_size=2000),
    data=st.data(),
)
def test_random_splits_equal_the_reference(
    key: bytes, plaintext: bytes, data: st.DataObject
) -> None:
    ciphertext = reference_encrypt(key, plaintext)
    for backend in AVAILABLE:
        cuts = data.draw(st.lists(st.integers(0, len(plaintext)), max_size=12))
        assert encrypt(backend, key, split(plaintext, cuts)) == ciphertext
        cuts = data.draw(st.lists(st.integers(0, len(ciphertext)), max_size=12))
        decryptor = crypto.CbcDecryptor(key, backend)
        out = b""
        fed = 0
        for piece in split(ciphertext, cuts):
            out += decryptor.update(piece)
            fed += len(piece)
            assert fed - len(out) < 32  # at most one block and a partial one held back
        assert out + decryptor.finalize() == plaintext


@pytest.mark.parametrize("backend", BACKENDS)
def test_megabytes_in_packet_sized_and_odd_pieces(backend: str) -> None:
    """Sizes the drivers use (64 KiB packets, 1 MiB reads) and odd ones, on big data."""
    rng = random.Random(7)
    key = rng.randbytes(32)
    plaintext = rng.randbytes(3 * 1024 * 1024 + 5)
    ciphertext = reference_encrypt(key, plaintext)
    for size in (65536, 1 << 20, 65536 + 267, 4093):
        plain_pieces = [plaintext[i : i + size] for i in range(0, len(plaintext), size)]
        assert encrypt(backend, key, plain_pieces) == ciphertext
        pieces = [ciphertext[i : i + size] for i in range(0, len(ciphertext), size)]
        assert decrypt(backend, key, pieces) == plaintext
    # Buffers other than bytes: what the parser and the file reader may hand over.
    views = [memoryview(ciphertext)[i : i + 65536] for i in range(0, len(ciphertext), 65536)]
    assert decrypt(backend, key, views) == plaintext  # type: ignore[arg-type]
    arrays = [bytearray(plaintext[i : i + 100_000]) for i in range(0, len(plaintext), 100_000)]
    assert encrypt(backend, key, arrays) == ciphertext  # type: ignore[arg-type]


@settings(max_examples=examples(100), deadline=None)
@given(plaintext=st.binary(max_size=3000), data=st.data())
def test_into_a_reused_buffer_equals_the_reference(plaintext: bytes, data: st.DataObject) -> None:
    """``update_into`` with one buffer for the whole stream, as the drivers use it: each
    piece's output is read before the next piece overwrites it."""
    key = bytes(range(32))
    ciphertext = reference_encrypt(key, plaintext)
    for backend in AVAILABLE:
        buffer = bytearray(3000 + 32)
        encryptor = crypto.CbcEncryptor(key, backend)
        out = b""
        for piece in split(plaintext, data.draw(st.lists(st.integers(0, len(plaintext))))):
            count = encryptor.update_into(piece, buffer)
            assert count % 16 == 0
            out += buffer[:count]
        assert out + encryptor.finalize() == ciphertext
        decryptor = crypto.CbcDecryptor(key, backend)
        out = b""
        for piece in split(ciphertext, data.draw(st.lists(st.integers(0, len(ciphertext))))):
            count = decryptor.update_into(memoryview(piece), buffer)
            out += buffer[:count]
        assert out + decryptor.finalize() == plaintext


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_output_buffer_too_small_is_refused(backend: str) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        crypto.CbcEncryptor(SPEC_KEY, backend).update_into(bytes(32), bytearray(47))
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.CbcDecryptor(SPEC_KEY, backend).update_into(bytes(32), bytearray(63))


@pytest.mark.parametrize("encrypting", BACKENDS)
@pytest.mark.parametrize("decrypting", BACKENDS)
def test_the_engines_interoperate(encrypting: str, decrypting: str) -> None:
    rng = random.Random(11)
    key = rng.randbytes(32)
    for size in (0, 1, 15, 16, 17, 65535, 65536, 200_001):
        plaintext = rng.randbytes(size)
        ciphertext = encrypt(encrypting, key, [plaintext])
        assert decrypt(decrypting, key, split(ciphertext, [rng.randrange(size + 17)])) == plaintext


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_padding_and_bad_lengths_are_refused(backend: str) -> None:
    bad_pad = AES.new(SPEC_KEY, AES.MODE_CBC, iv=bytes(16)).encrypt(bytes(15) + b"\x11")
    with pytest.raises(errors.BadPadding):
        decrypt(backend, SPEC_KEY, [bad_pad])
    for size in (0, 15, 17, 31):
        with pytest.raises(errors.BadPadding):
            decrypt(backend, SPEC_KEY, [bytes(size)])


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError):
        crypto.CbcEncryptor(SPEC_KEY, "rot13")
    with pytest.raises(ValueError):
        crypto.CbcDecryptor(SPEC_KEY, "rot13")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("pycryptodome", ("pycryptodome", "pycryptodome")),
        ("openssl", ("openssl", "openssl")),
        ("auto", ("openssl", "openssl")),
    ],
)
def test_the_setting_picks_the_engines(setting: str, expected: tuple[str, str]) -> None:
    if "openssl" in expected and not engines.openssl_available():
        pytest.skip("the cryptography package is not installed")
    assert engines.backend_choice(setting) == expected
    before = (engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND)
    try:
        engines.configure(setting)
        assert crypto.CbcEncryptor(SPEC_KEY).backend == expected[0]
        assert crypto.CbcDecryptor(SPEC_KEY).backend == expected[1]
    finally:
        engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND = before
