"""The version-3 cryptography (spec section 5): keys, key transport, streaming AES-CBC."""

from __future__ import annotations

import base64
import itertools
import random
import textwrap

import pytest
from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA1
from Crypto.PublicKey import RSA
from Crypto.Util.number import getPrime, inverse
from Crypto.Util.Padding import pad
from hypothesis import given, settings
from hypothesis import strategies as st

from eft_protocol import crypto, engines, errors
from tests.support.examples import examples

SETTINGS = settings(max_examples=examples(200), deadline=None)
BACKENDS = [
    pytest.param("pycryptodome"),
    pytest.param(
        "openssl",
        marks=pytest.mark.skipif(
            not engines.openssl_available(), reason="the cryptography package is not installed"
        ),
    ),
]
KEY_SUFFIX = bytes.fromhex("020111")  # INTEGER 17, the public exponent
RSA_OID = bytes.fromhex("06092a864886f70d010101")


def seeded(seed: int) -> crypto.RandFunc:
    return random.Random(seed).randbytes


@pytest.fixture(scope="module")
def key() -> RSA.RsaKey:
    return crypto.generate_rsa_key(seeded(1))


@pytest.fixture(scope="module")
def other_key() -> RSA.RsaKey:
    return crypto.generate_rsa_key(seeded(2))


# --- RSA keys -------------------------------------------------------------------


def test_a_generated_key_has_the_160_byte_der_of_the_spec() -> None:
    key = crypto.generate_rsa_key()
    assert key.size_in_bits() == 1024
    assert key.e == 17
    der = crypto.public_key_der(key)
    assert len(der) == 160
    assert der.startswith(crypto.PUBLIC_KEY_PREFIX)
    assert der.startswith(
        bytes.fromhex("30819d300d06092a864886f70d010101050003818b0030818702818100")
    )
    assert der.endswith(KEY_SUFFIX)
    assert der[len(crypto.PUBLIC_KEY_PREFIX) : -3] == key.n.to_bytes(128, "big")
    assert crypto.load_public_key(der) == key.public_key()


def test_public_key_der_refuses_a_key_that_does_not_fit() -> None:
    with pytest.raises(ValueError):
        crypto.public_key_der(RSA.generate(1024, randfunc=seeded(3)))  # e=65537: 162 bytes


@pytest.mark.parametrize("size", [0, 1, 159, 161, 162, 294])
def test_load_public_key_refuses_a_wrong_length(key: RSA.RsaKey, size: int) -> None:
    der = crypto.public_key_der(key)
    candidate = (der + bytes(200))[:size]
    with pytest.raises(errors.BadPublicKey):
        crypto.load_public_key(candidate)


def test_load_public_key_refuses_an_e_65537_key() -> None:
    der = RSA.generate(1024, randfunc=seeded(4)).public_key().export_key(format="DER")
    assert len(der) == 162
    with pytest.raises(errors.BadPublicKey):
        crypto.load_public_key(der)


def test_load_public_key_refuses_another_exponent_of_the_right_length() -> None:
    der = RSA.generate(1024, randfunc=seeded(5), e=3).public_key().export_key(format="DER")
    assert len(der) == 160  # fits the field: only the exponent check can catch it
    with pytest.raises(errors.BadPublicKey, match="e=3"):
        crypto.load_public_key(der)


@pytest.mark.parametrize(
    "der",
    [
        bytes(160),
        b"\xff" * 160,
        b"\x30" + bytes(159),
        crypto.PUBLIC_KEY_PREFIX + bytes(160 - len(crypto.PUBLIC_KEY_PREFIX)),
        b"-----BEGIN PUBLIC KEY-----" + bytes(134),
        b"ssh-rsa " + bytes(152),
    ],
    ids=["zeros", "ones", "sequence-of-zeros", "prefix-then-zeros", "pem-ish", "ssh-ish"],
)
def test_load_public_key_refuses_garbage(der: bytes) -> None:
    with pytest.raises(errors.BadPublicKey):
        crypto.load_public_key(der)


@settings(max_examples=examples(200), deadline=None)
@given(tail=st.binary(min_size=131, max_size=131))
def test_load_public_key_raises_only_bad_public_key_on_random_bytes(tail: bytes) -> None:
    der = crypto.PUBLIC_KEY_PREFIX + tail
    try:
        key = crypto.load_public_key(der)
    except errors.BadPublicKey:
        return
    # Anything accepted is exactly a canonical RSA-1024, e=17 key.
    assert key.e == 17 and key.size_in_bits() == 1024
    assert key.export_key(format="DER") == der


@settings(max_examples=examples(200), deadline=None)
@given(changes=st.lists(st.tuples(st.integers(0, 159), st.integers(0, 255)), min_size=1))
def test_load_public_key_accepts_a_mutant_only_if_it_is_canonical(
    key: RSA.RsaKey, changes: list[tuple[int, int]]
) -> None:
    mutant = bytearray(crypto.public_key_der(key))
    for index, value in changes:
        mutant[index] = value
    try:
        loaded = crypto.load_public_key(bytes(mutant))
    except errors.BadPublicKey:
        return
    assert loaded.e == 17 and loaded.size_in_bits() == 1024
    assert loaded.export_key(format="DER") == bytes(mutant)


def _small_private_key_der_of_160_bytes() -> bytes:
    rng = random.Random(5)
    for _ in range(2000):
        bits = rng.choice([112, 116, 120, 124])
        p, q = getPrime(bits, randfunc=rng.randbytes), getPrime(bits, randfunc=rng.randbytes)
        phi = (p - 1) * (q - 1)
        if p == q:
            continue
        try:
            d = inverse(17, phi)
        except ValueError:
            continue
        if (17 * d) % phi != 1:
            continue
        small = RSA.construct((p * q, 17, d, p, q))
        for pkcs in (1, 8):
            der: bytes = small.export_key(format="DER", pkcs=pkcs)
            if len(der) == 160:
                return der
    raise AssertionError("no 160-byte private key DER found")


def test_load_public_key_refuses_a_private_key(key: RSA.RsaKey) -> None:
    with pytest.raises(errors.BadPublicKey):
        crypto.load_public_key(key.export_key(format="DER"))
    # A private key DER that has exactly the field's length: only has_private() catches it.
    der = _small_private_key_der_of_160_bytes()
    assert RSA.import_key(der).has_private()
    with pytest.raises(errors.BadPublicKey, match="private"):
        crypto.load_public_key(der)


def test_load_public_key_refuses_a_non_canonical_encoding(key: RSA.RsaKey) -> None:
    # The same key in 160 bytes that PyCryptodome imports: no NULL algorithm parameters,
    # and the exponent as the non-minimal INTEGER 00 00 11.
    n = key.n.to_bytes(128, "big")
    rsa_public_key = b"\x02\x81\x81\x00" + n + b"\x02\x03\x00\x00\x11"
    rsa_public_key = b"\x30\x81" + bytes([len(rsa_public_key)]) + rsa_public_key
    bit_string = b"\x03\x81" + bytes([len(rsa_public_key) + 1]) + b"\x00" + rsa_public_key
    algorithm = b"\x30" + bytes([len(RSA_OID)]) + RSA_OID
    body = algorithm + bit_string
    der = b"\x30\x81" + bytes([len(body)]) + body
    assert len(der) == 160
    assert RSA.import_key(der) == key.public_key()  # a lenient parser takes it...
    with pytest.raises(errors.BadPublicKey, match="canonical"):
        crypto.load_public_key(der)  # ...we do not


# --- OAEP key transport ---------------------------------------------------------


def test_oaep_wrap_and_unwrap_round_trip(key: RSA.RsaKey) -> None:
    aes_key = crypto.new_aes_key()
    assert len(aes_key) == 32
    peer_view = crypto.load_public_key(crypto.public_key_der(key))
    wrapped = crypto.wrap_aes_key(peer_view, aes_key)
    assert len(wrapped) == 128
    assert aes_key not in wrapped
    assert crypto.unwrap_aes_key(key, wrapped) == aes_key


def test_unwrap_refuses_a_key_wrapped_for_someone_else(
    key: RSA.RsaKey, other_key: RSA.RsaKey
) -> None:
    wrapped = crypto.wrap_aes_key(other_key.public_key(), bytes(range(32)))
    with pytest.raises(errors.ResponseError):
        crypto.unwrap_aes_key(key, wrapped)


def test_unwrap_refuses_a_corrupted_ciphertext(key: RSA.RsaKey) -> None:
    wrapped = bytearray(crypto.wrap_aes_key(key.public_key(), bytes(32)))
    wrapped[77] ^= 0x01
    with pytest.raises(errors.ResponseError):
        crypto.unwrap_aes_key(key, bytes(wrapped))


@pytest.mark.parametrize("size", [0, 127, 129, 144])
def test_unwrap_refuses_a_ciphertext_of_the_wrong_size(key: RSA.RsaKey, size: int) -> None:
    with pytest.raises(errors.ResponseError):
        crypto.unwrap_aes_key(key, bytes(size))


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_unwrap_refuses_a_wrapped_key_that_is_not_32_bytes(key: RSA.RsaKey, size: int) -> None:
    wrapped = crypto.wrap_aes_key(key.public_key(), bytes(size))
    with pytest.raises(errors.ResponseError):
        crypto.unwrap_aes_key(key, wrapped)


def test_oaep_matches_pycryptodome_defaults_sha1(key: RSA.RsaKey) -> None:
    aes_key = bytes(range(32))
    wrapped = crypto.wrap_aes_key(key.public_key(), aes_key)
    explicit = PKCS1_OAEP.new(key, hashAlgo=SHA1, label=b"")
    assert explicit.decrypt(wrapped) == aes_key


# --- pinned randomness ----------------------------------------------------------


def test_pinned_randomness_gives_identical_outputs() -> None:
    first = crypto.generate_rsa_key(seeded(11))
    second = crypto.generate_rsa_key(seeded(11))
    assert (first.n, first.d) == (second.n, second.d)
    assert crypto.generate_rsa_key(seeded(12)).n != first.n

    assert crypto.new_aes_key(seeded(13)) == crypto.new_aes_key(seeded(13))
    assert crypto.new_aes_key(seeded(13)) != crypto.new_aes_key(seeded(14))

    aes_key = crypto.new_aes_key(seeded(13))
    wrapped = crypto.wrap_aes_key(first.public_key(), aes_key, seeded(15))
    assert wrapped == crypto.wrap_aes_key(first.public_key(), aes_key, seeded(15))
    assert wrapped != crypto.wrap_aes_key(first.public_key(), aes_key, seeded(16))
    assert crypto.unwrap_aes_key(first, wrapped) == aes_key


def test_unpinned_randomness_differs(key: RSA.RsaKey) -> None:
    assert crypto.new_aes_key() != crypto.new_aes_key()
    aes_key = bytes(32)
    assert crypto.wrap_aes_key(key, aes_key) != crypto.wrap_aes_key(key, aes_key)


# --- streaming AES-256-CBC --------------------------------------------------------


def reference_encrypt(key: bytes, plaintext: bytes) -> bytes:
    out: bytes = AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(pad(plaintext, 16))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


aes_keys = st.binary(min_size=32, max_size=32)


@SETTINGS
@given(aes_key=aes_keys, plaintext=st.binary(max_size=600), data=st.data())
def test_streaming_encryption_in_any_split_equals_one_shot(
    aes_key: bytes, plaintext: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(plaintext)), max_size=20))
    encryptor = crypto.CbcEncryptor(aes_key)
    out = b""
    fed = 0
    for piece in split(plaintext, cuts):
        out += encryptor.update(piece)
        fed += len(piece)
        assert len(out) % 16 == 0
        assert fed - len(out) < 16  # never holds more than a partial block
    out += encryptor.finalize()
    assert out == crypto.encrypt_file_bytes(aes_key, plaintext)
    assert out == reference_encrypt(aes_key, plaintext)
    assert len(out) == 16 * (len(plaintext) // 16 + 1)


@SETTINGS
@given(aes_key=aes_keys, plaintext=st.binary(max_size=600), data=st.data())
def test_streaming_decryption_in_any_split_equals_one_shot(
    aes_key: bytes, plaintext: bytes, data: st.DataObject
) -> None:
    ciphertext = reference_encrypt(aes_key, plaintext)
    cuts = data.draw(st.lists(st.integers(0, len(ciphertext)), max_size=20))
    decryptor = crypto.CbcDecryptor(aes_key)
    out = b""
    fed = 0
    for piece in split(ciphertext, cuts):
        out += decryptor.update(piece)
        fed += len(piece)
        assert fed - len(out) < 32  # holds back at most one block and a partial one
    out += decryptor.finalize()
    assert out == plaintext
    assert crypto.decrypt_file_bytes(aes_key, ciphertext) == plaintext


@SETTINGS
@given(aes_key=aes_keys, plaintext=st.binary(max_size=300))
def test_byte_at_a_time_round_trip(aes_key: bytes, plaintext: bytes) -> None:
    encryptor = crypto.CbcEncryptor(aes_key)
    ciphertext = b"".join(encryptor.update(bytes([b])) for b in plaintext) + encryptor.finalize()
    decryptor = crypto.CbcDecryptor(aes_key)
    recovered = b"".join(decryptor.update(bytes([b])) for b in ciphertext) + decryptor.finalize()
    assert recovered == plaintext


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_aes_classes_refuse_a_key_that_is_not_256_bits(size: int) -> None:
    with pytest.raises(ValueError):
        crypto.CbcEncryptor(bytes(size))
    with pytest.raises(ValueError):
        crypto.CbcDecryptor(bytes(size))


# --- strict PKCS#7 ----------------------------------------------------------------

PAD_KEY = bytes(range(32))


def pkcs7_valid(block: bytes) -> bool:
    count = block[-1]
    return 1 <= count <= 16 and block[-count:] == bytes([count]) * count


def raw_cbc(blocks: bytes) -> bytes:
    out: bytes = AES.new(PAD_KEY, AES.MODE_CBC, iv=bytes(16)).encrypt(blocks)
    return out


def test_every_corruption_of_the_padding_is_refused() -> None:
    first_block = b"0123456789abcdef"
    checked = refused = 0
    for count in range(1, 17):
        good = b"\xaa" * (16 - count) + bytes([count]) * count
        assert crypto.decrypt_file_bytes(PAD_KEY, raw_cbc(first_block + good)) == (
            first_block + good[: 16 - count]
        )
        for position in range(16 - count, 16):
            for value in range(256):
                if value == count:
                    continue
                block = bytearray(good)
                block[position] = value
                ciphertext = raw_cbc(first_block + bytes(block))
                checked += 1
                if pkcs7_valid(bytes(block)):
                    # e.g. "... 02 02" -> "... 02 01": still a valid (shorter) padding.
                    plain = crypto.decrypt_file_bytes(PAD_KEY, ciphertext)
                    assert plain == first_block + bytes(block[: 16 - block[-1]])
                    continue
                refused += 1
                with pytest.raises(errors.BadPadding):
                    crypto.decrypt_file_bytes(PAD_KEY, ciphertext)
    assert checked == 136 * 255
    assert refused > 30_000


@pytest.mark.parametrize("last", [0, 17, 32, 128, 255])
def test_a_pad_byte_out_of_range_is_refused(last: int) -> None:
    ciphertext = raw_cbc(bytes([last]) * 16)
    with pytest.raises(errors.BadPadding):
        crypto.decrypt_file_bytes(PAD_KEY, ciphertext)


@pytest.mark.parametrize("size", [0, 1, 15, 17, 31, 33, 47])
def test_a_ciphertext_not_a_positive_multiple_of_16_is_refused(size: int) -> None:
    ciphertext = (reference_encrypt(PAD_KEY, bytes(40)) * 2)[:size]
    with pytest.raises(errors.BadPadding):
        crypto.decrypt_file_bytes(PAD_KEY, ciphertext)
    decryptor = crypto.CbcDecryptor(PAD_KEY)
    for byte in ciphertext:
        decryptor.update(bytes([byte]))
    with pytest.raises(errors.BadPadding):
        decryptor.finalize()


def test_decrypting_with_the_wrong_key_is_almost_always_bad_padding() -> None:
    ciphertext = reference_encrypt(PAD_KEY, b"some file content" * 10)
    wrong = bytes(32)
    refusals = 0
    for flip in range(64):
        key = bytearray(wrong)
        key[0] = flip
        try:
            crypto.decrypt_file_bytes(bytes(key), ciphertext)
        except errors.BadPadding:
            refusals += 1
    assert refusals >= 50


# --- private key files ----------------------------------------------------------


def test_private_key_export_import_round_trip(key: RSA.RsaKey) -> None:
    text = crypto.export_private_key(key)
    assert "\n" not in text
    der = base64.b64decode(text, validate=True)
    assert der[0] == 0x30
    assert RSA_OID in der[:40]  # PKCS#8 PrivateKeyInfo names its algorithm
    loaded = crypto.import_private_key(text)
    assert loaded == key
    assert loaded.has_private()


@pytest.mark.parametrize("separator", ["\n", "\r\n", " \n\t"])
def test_private_key_import_accepts_line_breaks(key: RSA.RsaKey, separator: str) -> None:
    text = crypto.export_private_key(key)
    lines = textwrap.wrap(text, 72)
    assert len(lines) > 5
    assert all(len(line) == 72 for line in lines[:-1])
    wrapped = "\n  " + separator.join(lines) + separator
    assert crypto.import_private_key(wrapped) == key


@pytest.mark.parametrize(
    "text",
    ["", "not base64 at all!", "aGVsbG8gd29ybGQ=", "A" * 7, "@@@@"],
    ids=["empty", "junk", "base64-not-a-key", "bad-length", "bad-chars"],
)
def test_private_key_import_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        crypto.import_private_key(text)


def test_private_key_import_refuses_a_public_key(key: RSA.RsaKey) -> None:
    text = base64.b64encode(crypto.public_key_der(key)).decode()
    with pytest.raises(ValueError, match="public key"):
        crypto.import_private_key(text)


# --- what each refusal says (the log line an operator reads) ---------------------


def test_each_public_key_refusal_says_what_was_wrong(key: RSA.RsaKey) -> None:
    der = crypto.public_key_der(key)
    with pytest.raises(errors.BadPublicKey, match=r"^public key is 159 bytes, not 160$"):
        crypto.load_public_key(der[:159])
    with pytest.raises(errors.BadPublicKey, match=r"^public key is not an RSA DER: "):
        crypto.load_public_key(bytes(160))
    private = _small_private_key_der_of_160_bytes()
    with pytest.raises(errors.BadPublicKey, match=r"^a private key was sent as the public key$"):
        crypto.load_public_key(private)
    with pytest.raises(ValueError, match=r"^public key DER is 162 bytes; only RSA-1024, e=17"):
        crypto.public_key_der(RSA.generate(1024, randfunc=seeded(3)))


def test_a_non_canonical_public_key_is_named_as_such(key: RSA.RsaKey) -> None:
    n = key.n.to_bytes(128, "big")
    rsa_public_key = b"\x02\x81\x81\x00" + n + b"\x02\x03\x00\x00\x11"
    rsa_public_key = b"\x30\x81" + bytes([len(rsa_public_key)]) + rsa_public_key
    bit_string = b"\x03\x81" + bytes([len(rsa_public_key) + 1]) + b"\x00" + rsa_public_key
    algorithm = b"\x30" + bytes([len(RSA_OID)]) + RSA_OID
    body = algorithm + bit_string
    der = b"\x30\x81" + bytes([len(body)]) + body
    with pytest.raises(errors.BadPublicKey, match=r"^public key DER is not in canonical form$"):
        crypto.load_public_key(der)


def test_each_key_transport_refusal_says_what_was_wrong(
    key: RSA.RsaKey, other_key: RSA.RsaKey
) -> None:
    with pytest.raises(errors.ResponseError, match=r"^wrapped AES key is 127 bytes, not 128$"):
        crypto.unwrap_aes_key(key, bytes(127))
    wrapped = crypto.wrap_aes_key(other_key.public_key(), bytes(32), seeded(4))
    with pytest.raises(
        errors.ResponseError, match=r"^the AES key was not encrypted to our public key$"
    ):
        crypto.unwrap_aes_key(key, wrapped)
    short = crypto.wrap_aes_key(key.public_key(), bytes(31), seeded(5))
    with pytest.raises(errors.ResponseError, match=r"^the AES key is 31 bytes, not 32$"):
        crypto.unwrap_aes_key(key, short)


def test_each_private_key_refusal_says_what_was_wrong(key: RSA.RsaKey) -> None:
    with pytest.raises(ValueError, match=r"^not a Base64 RSA private key: "):
        crypto.import_private_key("@@@@")
    public = base64.b64encode(crypto.public_key_der(key)).decode()
    with pytest.raises(ValueError, match=r"^the key is a public key, not a private one$"):
        crypto.import_private_key(public)


def test_a_private_key_file_with_a_stray_character_is_refused(key: RSA.RsaKey) -> None:
    """Base64 is decoded strictly: a damaged key file is refused, not read around."""
    text = crypto.export_private_key(key)
    middle = len(text) // 2
    with pytest.raises(ValueError, match="Base64"):
        crypto.import_private_key(text[:middle] + "*" + text[middle:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_decryption_refusal_says_what_was_wrong(backend: str) -> None:
    key = bytes(range(32))
    ciphertext = crypto.encrypt_file_bytes(key, b"hello")
    short = crypto.CbcDecryptor(key, backend)
    short.update(ciphertext[:15])
    with pytest.raises(
        errors.BadPadding, match=r"^ciphertext length is not a positive multiple of 16$"
    ):
        short.finalize()
    # A last block whose final byte is 0 pads with nothing: never valid PKCS#7.
    bad = AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(bytes(16))
    decryptor = crypto.CbcDecryptor(key, backend)
    decryptor.update(bad)
    with pytest.raises(errors.BadPadding, match=r"^invalid PKCS#7 padding$"):
        decryptor.finalize()
    with pytest.raises(ValueError, match=r"^the output buffer needs len\(plaintext\) \+ 16 bytes$"):
        crypto.CbcEncryptor(key, backend).update_into(bytes(32), bytearray(47))


@pytest.mark.skipif(not engines.openssl_available(), reason="the cryptography package is absent")
@pytest.mark.parametrize("backend", ["openssl", "pycryptodome"])
def test_the_backend_asked_for_is_the_one_that_runs(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EFT_AES_BACKEND is honoured, both ways: both backends give the same bytes, so
    only which library runs tells a backend silently ignored from one obeyed."""
    key = bytes(range(32))
    plaintext = b"x" * 20
    expected = AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(plaintext + bytes([12]) * 12)
    opened: list[bytes] = []
    real = crypto._openssl_cbc

    def recording(key: bytes) -> object:
        opened.append(key)
        return real(key)

    monkeypatch.setattr(crypto, "_openssl_cbc", recording)
    encryptor = crypto.CbcEncryptor(key, backend)
    assert encryptor.update(plaintext) + encryptor.finalize() == expected
    decryptor = crypto.CbcDecryptor(key, backend)
    assert decryptor.update(expected) + decryptor.finalize() == plaintext
    assert opened == ([key, key] if backend == "openssl" else [])


def test_a_backend_that_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    key = bytes(range(32))
    with pytest.raises(ValueError, match=r"^unknown AES backend 'rot13'$"):
        crypto.CbcEncryptor(key, "rot13")
    with pytest.raises(ValueError, match=r"^AES-256 needs a 32-byte key, got 31$"):
        crypto.CbcDecryptor(key[:31])
    monkeypatch.setattr(crypto, "openssl_available", lambda: False)
    for cipher in (crypto.CbcEncryptor, crypto.CbcDecryptor):
        with pytest.raises(
            RuntimeError, match=r"^the openssl backend needs the cryptography package$"
        ):
            cipher(key, "openssl")
        assert cipher(key, "pycryptodome").backend == "pycryptodome"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_decryption_buffer_too_small_says_how_large_it_must_be(backend: str) -> None:
    with pytest.raises(
        ValueError, match=r"^the output buffer needs len\(ciphertext\) \+ 32 bytes$"
    ):
        crypto.CbcDecryptor(bytes(32), backend).update_into(bytes(32), bytearray(63))
