"""The version-4 record layer and record plaintexts, one rule at a time (mutation testing's
survivors, docs/TESTING.md): every seal checked against an independent AES-GCM (the
``cryptography`` package's, with the nonce and associated data the protocol defines), the
rekey's key, the counter's end, and every plaintext's exact bytes and each way it can be
malformed."""

from __future__ import annotations

import re
import struct
import tracemalloc
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eft_protocol import engines
from eft_protocol.errors import ProtocolError
from eft_protocol.v4 import records as rec
from eft_protocol.v4.file_digest import DigestAlgorithm
from eft_protocol.v4.handshake import VERSION

KEY = bytes(range(32))
BACKENDS = ("openssl", "pycryptodome")
CLIENT_ID = bytes(range(100, 116))


def exactly(message: str) -> str:
    """A ``match`` for the whole message (the log's words), not a part of it."""
    return "^" + re.escape(message) + "$"


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


def _rekeyed(key: bytes) -> bytes:
    return AESGCM(key).encrypt(_nonce(2**64 - 1), bytes(32), b"")[:32]


def test_the_constants_of_the_record_layer() -> None:
    assert (rec.TAG_SIZE, rec.KEY_SIZE, rec.CHUNK) == (16, 32, 1 << 20)
    assert rec.MAX_NONCE == 2**64 - 1
    assert rec.REKEY_INTERVAL == 65536
    assert rec.MAX_PLAINTEXT == 9 + 1048576 == rec.CHUNK_PREFIX_SIZE + rec.CHUNK
    assert (rec.FLAG_FINAL, rec.FLAG_STREAM, rec.FLAG_DIRECTORY, rec.FLAG_SYNC_NOW) == (1, 2, 4, 1)
    assert (rec.COMMIT_IF, rec.STREAM_WINDOW, rec.WIDE_STREAM_WINDOW) == (903, 64, 256)
    assert [int(o) for o in rec.Outcome] == [0, 1]
    assert [int(e) for e in rec.ErrorCode] == list(range(1, 11))
    assert (int(rec.ErrorCode.UNKNOWN_DIGEST), int(rec.ErrorCode.STORAGE)) == (10, 7)


def test_a_record_error_closes_without_a_word() -> None:
    error = rec.RecordError("x")
    assert isinstance(error, ProtocolError)
    assert error.reason == "bad_record"
    assert error.fatal is True


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_key_is_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=exactly("a record key is 32 bytes")):
        rec.RecordCipher(bytes(size), "pycryptodome")


def test_the_rekey_interval_is_at_least_one_record() -> None:
    with pytest.raises(ValueError, match=exactly("the rekey interval is at least one record")):
        rec.RecordCipher(KEY, "pycryptodome", rekey_interval=0)
    assert rec.RecordCipher(KEY, "pycryptodome", rekey_interval=1).rekey_interval == 1
    assert rec.RecordCipher(KEY, "pycryptodome").rekey_interval == rec.REKEY_INTERVAL


def test_each_backend_runs_on_its_own_library() -> None:
    """OpenSSL (through ``cryptography``) when asked for, before and after a rekey;
    PyCryptodome otherwise: the bytes are the same, the cost is not (records.py)."""
    for rekey_interval in (1 << 16, 1):
        openssl = rec.RecordCipher(KEY, "openssl", rekey_interval=rekey_interval)
        pycryptodome = rec.RecordCipher(KEY, "pycryptodome", rekey_interval=rekey_interval)
        for cipher in (openssl, pycryptodome):
            cipher.seal(b"", b"x")
        assert isinstance(openssl._openssl, AESGCM)
        assert pycryptodome._openssl is None


def test_a_file_name_is_checked_by_paths() -> None:
    assert rec.check_file_name("a/é") == "a/é"
    with pytest.raises(ValueError, match="NFC"):
        rec.check_file_name("a/e\u0301")


def test_the_default_backend_is_the_engines_choice() -> None:
    cipher = rec.RecordCipher(KEY)
    assert cipher.backend == engines.ENCRYPT_BACKEND
    assert cipher.counter == 0
    assert cipher.key == KEY


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_seal_is_aes_gcm_with_the_counter_nonce_and_the_header_as_data(backend: str) -> None:
    cipher = rec.RecordCipher(KEY, backend)
    reference = AESGCM(KEY)
    for counter, (header, plaintext) in enumerate([(b"h1", b"first"), (b"h2", b""), (b"", b"x")]):
        assert cipher.seal(header, plaintext) == reference.encrypt(
            _nonce(counter), plaintext, header
        )
        assert cipher.counter == counter + 1
    opener = rec.RecordCipher(KEY, backend)
    sealed = reference.encrypt(_nonce(0), b"payload", b"head")
    assert opener.open(b"head", sealed) == b"payload"
    assert opener.counter == 1
    assert opener.open(b"head", reference.encrypt(_nonce(1), b"next", b"head")) == b"next"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_opened_out_of_order_or_with_another_header_fails(backend: str) -> None:
    reference = AESGCM(KEY)
    second = reference.encrypt(_nonce(1), b"payload", b"head")
    opener = rec.RecordCipher(KEY, backend)
    with pytest.raises(rec.RecordError, match=exactly("record failed authentication")):
        opener.open(b"head", second)
    assert opener.counter == 0  # a failed record does not count
    with pytest.raises(rec.RecordError, match=exactly("record failed authentication")):
        opener.open(b"HEAD", reference.encrypt(_nonce(0), b"payload", b"head"))
    assert opener.open(b"head", reference.encrypt(_nonce(0), b"payload", b"head")) == b"payload"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [0, 15])
def test_a_payload_shorter_than_its_tag_fails_before_any_crypto(backend: str, size: int) -> None:
    opener = rec.RecordCipher(KEY, backend)
    with pytest.raises(rec.RecordError, match=exactly("record shorter than its tag")):
        opener.open(b"", bytes(size))
    assert opener.counter == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_plaintext_record_is_exactly_its_tag(backend: str) -> None:
    sealed = rec.RecordCipher(KEY, backend).seal(b"h", b"")
    assert len(sealed) == rec.TAG_SIZE
    assert rec.RecordCipher(KEY, backend).open(b"h", sealed) == b""


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_key_is_replaced_every_interval_and_the_counter_goes_on(backend: str) -> None:
    cipher = rec.RecordCipher(KEY, backend, rekey_interval=2)
    cipher.seal(b"", b"a")
    assert cipher.key == KEY  # one record: not yet
    cipher.seal(b"", b"b")
    first = _rekeyed(KEY)
    assert cipher.key == first
    assert cipher.seal(b"h", b"c") == AESGCM(first).encrypt(_nonce(2), b"c", b"h")
    cipher.seal(b"", b"d")
    assert cipher.key == _rekeyed(first)
    assert cipher.counter == 4
    opener = rec.RecordCipher(KEY, backend, rekey_interval=2)
    for _ in range(2):
        opener.open(b"", AESGCM(KEY).encrypt(_nonce(opener.counter), b"", b""))
    assert opener.key == first


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_last_counter_is_never_used(backend: str) -> None:
    cipher = rec.RecordCipher(KEY, backend, rekey_interval=1 << 70)
    cipher.counter = rec.MAX_NONCE - 1
    assert cipher.seal(b"", b"x") == AESGCM(KEY).encrypt(_nonce(rec.MAX_NONCE - 1), b"x", b"")
    with pytest.raises(rec.RecordError, match=exactly("record counter exhausted")):
        cipher.seal(b"", b"y")
    with pytest.raises(rec.RecordError, match=exactly("record counter exhausted")):
        cipher.open(b"", bytes(rec.TAG_SIZE))


def test_the_invalid_tag_exception_is_openssls_when_it_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert rec._invalid_tag() is InvalidTag
    monkeypatch.setattr(engines, "openssl_available", lambda: False)
    assert rec._invalid_tag() is ValueError


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_record_is_its_header_then_the_sealed_plaintext(backend: str) -> None:
    cipher = rec.RecordCipher(KEY, backend)
    record = rec.request_record(cipher, CLIENT_ID, 828, b"plain")
    header = struct.pack("<16sBHI", CLIENT_ID, VERSION, 828, 5 + 16)
    assert record == header + AESGCM(KEY).encrypt(_nonce(0), b"plain", header)
    pieces = rec.request_record_pieces(cipher, CLIENT_ID, 900, memoryview(b""))
    header = struct.pack("<16sBHI", CLIENT_ID, VERSION, 900, 16)
    assert pieces == [header, AESGCM(KEY).encrypt(_nonce(1), b"", header)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_record_sealed_into_a_buffer_is_the_same_record(backend: str) -> None:
    """The client's file chunks (``request_record_into``): the header, then the sealed
    payload as a view of the caller's buffer."""
    out = bytearray(64)
    pieces = rec.request_record_into(
        rec.RecordCipher(KEY, backend), CLIENT_ID, 828, memoryview(b"plain"), out
    )
    header = struct.pack("<16sBHI", CLIENT_ID, VERSION, 828, 5 + 16)
    assert pieces[0] == header
    assert bytes(pieces[1]) == AESGCM(KEY).encrypt(_nonce(0), b"plain", header)
    assert bytes(out[: 5 + 16]) == bytes(pieces[1])  # in the buffer given, not a copy


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [0, 15])
def test_an_open_into_a_lent_buffer_of_a_payload_shorter_than_its_tag_fails_first(
    backend: str, size: int
) -> None:
    opener = rec.RecordCipher(KEY, backend)
    with pytest.raises(rec.RecordError, match=exactly("record shorter than its tag")):
        opener.open_into(b"", bytes(size), bytearray(64))
    assert opener.counter == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_open_into_a_lent_buffer_of_a_forgery_fails_in_the_log_s_words(backend: str) -> None:
    forged = bytearray(AESGCM(KEY).encrypt(_nonce(0), b"payload", b"head"))
    forged[0] ^= 1
    opener = rec.RecordCipher(KEY, backend)
    with pytest.raises(rec.RecordError, match=exactly("record failed authentication")):
        opener.open_into(b"head", bytes(forged), bytearray(64))
    assert opener.counter == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_open_into_a_buffer_too_small_for_the_record_is_refused_before_opening(
    backend: str,
) -> None:
    sealed = AESGCM(KEY).encrypt(_nonce(0), b"payload", b"h")
    opener = rec.RecordCipher(KEY, backend)
    with pytest.raises(
        ValueError, match=exactly("the plaintext buffer is smaller than the record")
    ):
        opener.open_into(b"h", sealed, bytearray(6))
    assert opener.counter == 0
    assert bytes(opener.open_into(b"h", sealed, bytearray(7))) == b"payload"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_plaintext_opened_into_a_lent_buffer_is_a_view_of_that_buffer(backend: str) -> None:
    """The server lends a buffer per record and takes it back once the chunk is
    written: the plaintext lives in it, at its start, and nowhere else."""
    reference = AESGCM(KEY)
    opener = rec.RecordCipher(KEY, backend)
    first, second = bytearray(16), bytearray(16)
    one = opener.open_into(b"h", reference.encrypt(_nonce(0), b"first", b"h"), first)
    two = opener.open_into(b"h", reference.encrypt(_nonce(1), b"second", b"h"), second)
    assert (bytes(one), bytes(two)) == (b"first", b"second")
    assert (bytes(first[:5]), bytes(second[:6])) == (b"first", b"second")
    second[0:1] = b"S"
    assert bytes(two) == b"Second"


def _peak_allocated(call: Callable[[], object]) -> int:
    """The most memory Python objects held at once during ``call``, beyond what they
    held before (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_whole_chunk_sealed_and_opened_in_reused_buffers_makes_no_new_mib(
    backend: str,
) -> None:
    """What ``seal_into`` and ``open_into`` are for (issue 22): a 1 MiB record per
    MiB of file, with no 1 MiB object made for it once the buffers exist (on
    ``cryptography`` 45 or later, its ``encrypt_into`` and ``decrypt_into``)."""
    plaintext = bytes(range(256)) * (rec.MAX_PLAINTEXT // 256) + bytes(rec.MAX_PLAINTEXT % 256)
    header = bytes(23)
    sealer, opener = rec.RecordCipher(KEY, backend), rec.RecordCipher(KEY, backend)
    out = bytearray(rec.MAX_PLAINTEXT + rec.TAG_SIZE)
    lent = bytearray(rec.MAX_PLAINTEXT)
    opener.open_into(header, sealer.seal_into(header, plaintext, out), lent)
    assert _peak_allocated(lambda: sealer.seal_into(header, plaintext, out)) < rec.CHUNK // 4
    sealed = bytes(out)
    assert sealed == AESGCM(KEY).encrypt(_nonce(1), plaintext, header)
    assert bytes(opener.open_into(header, sealed, lent)) == plaintext
    again = sealer.seal(header, plaintext)
    assert _peak_allocated(lambda: opener.open_into(header, again, lent)) < rec.CHUNK // 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_response_record_is_its_header_then_the_sealed_plaintext(backend: str) -> None:
    record = rec.response_record(rec.RecordCipher(KEY, backend), 1604, b"abc")
    header = struct.pack("<BHI", VERSION, 1604, 3 + 16)
    assert record == header + AESGCM(KEY).encrypt(_nonce(0), b"abc", header)


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, 1), (1, 1), (rec.CHUNK - 1, 1), (rec.CHUNK, 1), (rec.CHUNK + 1, 2), (3 * rec.CHUNK, 3)],
)
def test_chunk_count(size: int, chunks: int) -> None:
    assert rec.chunk_count(size) == chunks


def test_the_metadata_bytes_and_back() -> None:
    meta = rec.FileMeta(7, 300, bytes(range(16)), "a/b.txt", DigestAlgorithm.SHA256)
    encoded = meta.encode()
    assert encoded == (
        struct.pack("<IIB", 7, 0, 0)
        + struct.pack("<Q16sBH", 300, bytes(range(16)), int(DigestAlgorithm.SHA256), 7)
        + b"a/b.txt"
    )
    assert rec.decode_file_record(encoded) == meta
    streamed = rec.FileMeta(1, 2, bytes(16), "é", stream=True)
    assert streamed.encode()[8] == rec.FLAG_STREAM
    assert streamed.encode()[-4:] == b"\x02\x00\xc3\xa9"  # name length 2, UTF-8
    decoded = rec.decode_file_record(streamed.encode())
    assert isinstance(decoded, rec.FileMeta)
    assert (decoded.stream, decoded.directory, decoded.bad_name) == (True, False, None)
    assert (
        decoded.digest_algorithm
        == DigestAlgorithm.BLAKE3
        == meta.__class__(0, 0, b"", "").digest_algorithm
    )
    folder = rec.FileMeta(3, 0, bytes(16), "d", directory=True)
    assert folder.encode()[8] == rec.FLAG_DIRECTORY
    decoded = rec.decode_file_record(folder.encode())
    assert isinstance(decoded, rec.FileMeta)
    assert (decoded.stream, decoded.directory) == (False, True)


def test_a_refused_name_is_decoded_with_its_reason_not_closed() -> None:
    decoded = rec.decode_file_record(rec.FileMeta(1, 0, bytes(16), "../x").encode())
    assert isinstance(decoded, rec.FileMeta)
    assert decoded.bad_name is not None
    assert decoded.name == "../x"
    raw = struct.pack("<IIB", 1, 0, 0) + struct.pack("<Q16sBH", 0, bytes(16), 1, 2) + b"\xff/"
    decoded = rec.decode_file_record(raw)
    assert isinstance(decoded, rec.FileMeta)
    assert decoded.bad_name is not None
    assert decoded.name == "\ufffd/"


def test_a_folders_metadata_has_no_data_and_no_stream() -> None:
    base = rec.FileMeta(1, 0, bytes(16), "d", directory=True)
    sized = rec.FileMeta(1, 5, bytes(16), "d", directory=True)
    streamed = rec.FileMeta(1, 0, bytes(16), "d", directory=True, stream=True)
    assert isinstance(rec.decode_file_record(base.encode()), rec.FileMeta)
    for bad in (sized, streamed):
        with pytest.raises(
            rec.RecordError, match=exactly("a folder's metadata has no data and no STREAM flag")
        ):
            rec.decode_file_record(bad.encode())


def test_malformed_metadata() -> None:
    good = rec.FileMeta(1, 0, bytes(16), "ab").encode()
    with pytest.raises(rec.RecordError, match=exactly("828 record too short")):
        rec.decode_file_record(good[:8])
    assert rec.decode_file_record(good[:9] + good[9:]) is not None
    for cut in (good[: 9 + 26], good[:-1], good + b"c"):
        with pytest.raises(rec.RecordError, match=exactly("malformed file metadata")):
            rec.decode_file_record(cut)
    empty_name = good[: 9 + 25] + b"\x00\x00"
    decoded = rec.decode_file_record(empty_name)
    assert isinstance(decoded, rec.FileMeta) and decoded.bad_name is not None


@pytest.mark.parametrize(("index", "flags"), [(0, 1), (0, 8), (0, 0x80), (1, 2), (1, 4), (2, 8)])
def test_reserved_flags_close(index: int, flags: int) -> None:
    record = struct.pack("<IIB", 1, index, flags) + bytes(27)
    with pytest.raises(rec.RecordError, match=exactly("828 record has reserved flags set")):
        rec.decode_file_record(record)


def test_a_chunk_bytes_and_back() -> None:
    chunk = rec.FileChunk(9, 2, True, b"data")
    assert chunk.encode() == struct.pack("<IIB", 9, 2, 1) + b"data"
    assert rec.encode_chunk_prefix(9, 2, True) == chunk.encode()[:9]
    assert rec.encode_chunk_prefix(9, 2, False) == struct.pack("<IIB", 9, 2, 0)
    assert (
        rec.FileChunk(9, 2, False, memoryview(b"d")).encode() == struct.pack("<IIB", 9, 2, 0) + b"d"
    )
    decoded = rec.decode_file_record(chunk.encode())
    assert isinstance(decoded, rec.FileChunk)
    assert (decoded.file_id, decoded.index, decoded.final, bytes(decoded.data)) == (
        9,
        2,
        True,
        b"data",
    )
    assert isinstance(decoded.data, memoryview)
    empty = rec.decode_file_record(struct.pack("<IIB", 9, 3, 0))
    assert isinstance(empty, rec.FileChunk)
    assert (empty.final, bytes(empty.data)) == (False, b"")


def test_the_small_plaintexts() -> None:
    assert rec.encode_file_id(0x01020304) == b"\x04\x03\x02\x01"
    assert rec.decode_file_id(b"\x04\x03\x02\x01") == 0x01020304
    assert rec.encode_resume(1, 2) == b"\x01\x00\x00\x00\x02\x00\x00\x00"
    assert rec.decode_resume(rec.encode_resume(5, 6)) == (5, 6)
    received = rec.encode_received(3, 2**40, bytes(range(32)), DigestAlgorithm.SHA256)
    assert received == struct.pack("<IQB32s", 3, 2**40, 2, bytes(range(32)))
    assert rec.decode_received(received) == (3, 2**40, 2, bytes(range(32)))
    assert rec.encode_received(3, 1, bytes(32))[12] == DigestAlgorithm.BLAKE3
    assert rec.encode_outcome(4, rec.Outcome.DIGEST_DIFFERED) == b"\x04\x00\x00\x00\x01"
    assert rec.decode_outcome(b"\x04\x00\x00\x00\x01") == (4, rec.Outcome.DIGEST_DIFFERED)
    assert rec.decode_outcome(b"\x04\x00\x00\x00\x00") == (4, rec.Outcome.STORED)


@pytest.mark.parametrize(
    ("decode", "good_size", "message"),
    [
        (rec.decode_file_id, 4, "expected a 4-byte file id"),
        (rec.decode_resume, 8, "expected file id and next chunk"),
        (rec.decode_received, 45, "1603 must carry file id, size, digest algorithm and digest"),
        (rec.decode_outcome, 5, "expected a file id and an outcome"),
        (rec.CommitIf.decode, 38, "903 must carry file id, flags, digest algorithm and digest"),
    ],
)
def test_a_fixed_size_plaintext_of_another_size_closes(
    decode: object, good_size: int, message: str
) -> None:
    assert callable(decode)
    decode(bytes(good_size))
    for size in (good_size - 1, good_size + 1):
        with pytest.raises(rec.RecordError, match=exactly(message)):
            decode(bytes(size))


def test_an_unknown_outcome_closes() -> None:
    with pytest.raises(rec.RecordError, match=exactly("unknown outcome 2")):
        rec.decode_outcome(b"\x00\x00\x00\x00\x02")


def test_commit_if_bytes_and_back() -> None:
    commit = rec.CommitIf(5, bytes(range(32)), DigestAlgorithm.SHA256, sync_now=True)
    assert commit.encode() == struct.pack("<IBB32s", 5, 1, 2, bytes(range(32)))
    assert rec.CommitIf.decode(commit.encode()) == commit
    plain = rec.CommitIf(5, bytes(32))
    assert plain.encode()[4:6] == bytes([0, int(DigestAlgorithm.BLAKE3)])
    assert rec.CommitIf.decode(plain.encode()) == plain
    for flags in (2, 0x80):
        with pytest.raises(rec.RecordError, match=exactly("903 has reserved flags set")):
            rec.CommitIf.decode(struct.pack("<IBB32s", 5, flags, 1, bytes(32)))


def test_the_error_plaintext() -> None:
    assert rec.encode_error(rec.ErrorCode.BUSY, "later") == b"\x05\x00\x05later"
    assert rec.decode_error(b"\x05\x00\x05later") == (5, "later")
    assert rec.encode_error(0x0102, "é") == b"\x02\x01\x01?"
    long = rec.encode_error(1, "x" * 300)
    assert long == b"\x01\x00\xc8" + b"x" * 200
    assert rec.decode_error(long) == (1, "x" * 200)
    assert rec.decode_error(b"\x01\x00\x00") == (1, "")
    assert rec.decode_error(rec.encode_error(0xFFFF, "")) == (0xFFFF, "")
    assert rec.decode_error(b"\x01\x00\x01\xff") == (1, "\ufffd")
    for bad in (b"", b"\x01\x00", b"\x01\x00\x01", b"\x01\x00\x00x", b"\x01\x00\x02x"):
        with pytest.raises(rec.RecordError, match=exactly("malformed 1607")):
            rec.decode_error(bad)
