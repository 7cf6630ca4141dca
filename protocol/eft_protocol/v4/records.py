"""The version-4 record layer and the plaintext of every record.

After the handshake each direction has its own key (from Noise's ``Split()``) and its own
counter. A record is ``header ‖ AES-256-GCM(key, nonce = 0^4 ‖ u64be(n), AD = header,
plaintext)``: the header on the wire is the associated data, so version, code, size and
client id are authenticated too. Counters are never sent: a record that is dropped,
repeated or reordered fails its tag. Any failure closes the connection without a word,
so there is nothing to learn from the server's answers.

AES-256-GCM, the cipher of the handshake's suite (``Noise_XX_25519_AESGCM_SHA256``), and
1 MiB chunks instead of 32 KiB: measured on this project's machines, PyCryptodome's
AES-GCM runs 1.8 GB/s on 1 MiB records and ChaCha20-Poly1305 0.56 GB/s
(docs/PROTOCOL-v4.md, "Choices").

Each key seals at most ``REKEY_INTERVAL`` records: after that many, both sides replace
it with Noise's ``REKEY`` (no message: each side counts), so no AES-GCM key covers more
than about 64 GiB, under TLS 1.3's limit for it (RFC 8446, section 5.5).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from .. import engines
from ..codes import REQUEST_HEADER, RESPONSE_HEADER
from ..errors import ProtocolError
from . import paths
from .file_digest import DigestAlgorithm
from .handshake import FEATURE_STREAM, FEATURE_WIDE_WINDOW, VERSION

TAG_SIZE = 16
KEY_SIZE = 32
CHUNK = 1 << 20
MAX_NONCE = 2**64 - 1
#: Records per key and direction: 2^16 records of at most 1 MiB + 25 bytes is 2^32 AES
#: blocks, a quarter of what RFC 8446 (section 5.5) allows one AES-GCM key (2^34.5).
REKEY_INTERVAL = 1 << 16
#: The largest record plaintext: a data chunk and its 9-byte prefix.
MAX_PLAINTEXT = 9 + CHUNK
Buffer = bytes | bytearray | memoryview


class RecordError(ProtocolError):
    """A record failed to authenticate or is malformed: close, say nothing."""

    reason = "bad_record"
    fatal = True


class RecordCipher:
    """One direction's key and counter.

    The AEAD runs on OpenSSL (the ``cryptography`` package) when it is installed and
    ``EFT_AES_BACKEND`` allows it, else on PyCryptodome: the same bytes either way
    (tests/v4/test_v4_vectors.py); OpenSSL is about 6x cheaper per GiB here.
    """

    def __init__(
        self, key: bytes, backend: str | None = None, *, rekey_interval: int = REKEY_INTERVAL
    ) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a record key is 32 bytes")
        if rekey_interval < 1:
            raise ValueError("the rekey interval is at least one record")
        self.counter = 0
        self.rekey_interval = rekey_interval
        self.backend = backend or engines.ENCRYPT_BACKEND
        self._set_key(key)

    def _set_key(self, key: bytes) -> None:
        self._key = key
        self._openssl: Any = _openssl_aesgcm(key) if self.backend == "openssl" else None
        # PyCryptodome's AES only when it runs the records: importing it loads its C
        # bindings (through cffi when installed), start-up that OpenSSL's runs do not need.
        self._aes: Any = None if self._openssl is not None else _pycryptodome_aes()

    def _advance(self) -> None:
        """Count a record; every ``rekey_interval`` records, Noise's REKEY: the new key is
        the first 32 bytes of ENCRYPT(k, nonce 2^64 - 1, AD empty, 32 zero bytes). The
        counter goes on (it is not reset), as in Noise."""
        self.counter += 1
        if self.counter % self.rekey_interval == 0:
            nonce = bytes(4) + MAX_NONCE.to_bytes(8, "big")
            if self._openssl is not None:
                sealed = self._openssl.encrypt(nonce, bytes(KEY_SIZE), b"")
            else:
                aead = self._aes.new(self._key, self._aes.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
                sealed = aead.encrypt(bytes(KEY_SIZE))
            self._set_key(bytes(sealed[:KEY_SIZE]))

    @property
    def key(self) -> bytes:
        """The key in use now (after any rekey): for test vectors."""
        return self._key

    def _nonce(self) -> bytes:
        if self.counter >= MAX_NONCE:
            raise RecordError("record counter exhausted")
        return bytes(4) + self.counter.to_bytes(8, "big")

    def _pycryptodome(self, nonce: bytes, header: Buffer) -> Any:
        aead = self._aes.new(self._key, self._aes.MODE_GCM, nonce=nonce, mac_len=TAG_SIZE)
        aead.update(header)
        return aead

    def seal(self, header: Buffer, plaintext: Buffer) -> bytes:
        """Ciphertext and tag of one record."""
        nonce = self._nonce()
        sealed: bytes
        if self._openssl is not None:
            sealed = self._openssl.encrypt(nonce, plaintext, header)
        else:
            ciphertext, tag = self._pycryptodome(nonce, header).encrypt_and_digest(plaintext)
            sealed = bytes(ciphertext) + bytes(tag)
        self._advance()
        return sealed

    def seal_into(
        self, header: Buffer, plaintext: Buffer, out: bytearray | memoryview
    ) -> memoryview:
        """``seal`` written into ``out`` (reused from record to record: no new 1 MiB
        object, and none of the zeroing and page faults a fresh one costs); the view of
        ``out`` the ciphertext and tag fill."""
        size = len(plaintext) + TAG_SIZE
        sealed = memoryview(out)[:size]
        nonce = self._nonce()
        if self._openssl is not None and hasattr(self._openssl, "encrypt_into"):
            self._openssl.encrypt_into(nonce, plaintext, header, sealed)
        elif self._openssl is not None:  # cryptography before 45: no encrypt_into
            sealed[:] = self._openssl.encrypt(nonce, plaintext, header)
        else:
            aead = self._pycryptodome(nonce, header)
            aead.encrypt(plaintext, output=sealed[: size - TAG_SIZE])
            sealed[size - TAG_SIZE :] = aead.digest()
        self._advance()
        return sealed

    def open_into(self, header: Buffer, payload: Buffer, out: bytearray | memoryview) -> memoryview:
        """``open`` into ``out`` (a buffer its caller lends and takes back: no new 1 MiB
        object per record, and the server bounds how many such buffers exist); the view
        of ``out`` the plaintext fills."""
        if len(payload) < TAG_SIZE:
            raise RecordError("record shorter than its tag")
        size = len(payload) - TAG_SIZE
        if len(out) < size:
            raise ValueError("the plaintext buffer is smaller than the record")
        plaintext = memoryview(out)[:size]
        nonce = self._nonce()
        try:
            with memoryview(payload) as view:
                if self._openssl is not None and hasattr(self._openssl, "decrypt_into"):
                    self._openssl.decrypt_into(nonce, view, header, plaintext)
                elif self._openssl is not None:  # cryptography before 45
                    plaintext[:] = self._openssl.decrypt(nonce, view, header)
                else:
                    aead = self._pycryptodome(nonce, header)
                    aead.decrypt_and_verify(view[:-TAG_SIZE], view[-TAG_SIZE:], output=plaintext)
        except (ValueError, _invalid_tag()):
            raise RecordError("record failed authentication") from None
        self._advance()
        return plaintext

    def open(self, header: Buffer, payload: Buffer) -> bytes:
        if len(payload) < TAG_SIZE:
            raise RecordError("record shorter than its tag")
        nonce = self._nonce()
        plaintext: bytes
        try:
            if self._openssl is not None:
                plaintext = self._openssl.decrypt(nonce, payload, header)
            else:
                with memoryview(payload) as view:
                    aead = self._pycryptodome(nonce, header)
                    plaintext = aead.decrypt_and_verify(view[:-TAG_SIZE], view[-TAG_SIZE:])
        except (ValueError, _invalid_tag()):
            raise RecordError("record failed authentication") from None
        self._advance()
        return plaintext


def _pycryptodome_aes() -> Any:
    from Crypto.Cipher import AES  # noqa: PLC0415 - see RecordCipher._set_key

    return AES


def _openssl_aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import (  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
        AESGCM,
    )

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    """OpenSSL's failed-tag exception, or a stand-in when it is not installed."""
    if not engines.openssl_available():
        return ValueError
    from cryptography.exceptions import (  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
        InvalidTag,
    )

    tag_error: type[Exception] = InvalidTag
    return tag_error


def request_record(cipher: RecordCipher, client_id: bytes, code: int, plaintext: Buffer) -> bytes:
    return b"".join(request_record_pieces(cipher, client_id, code, plaintext))


def request_record_pieces(
    cipher: RecordCipher, client_id: bytes, code: int, plaintext: Buffer
) -> list[bytes]:
    """The record as header and sealed payload, for ``writelines`` (no concatenation)."""
    header = REQUEST_HEADER.pack(client_id, VERSION, code, len(plaintext) + TAG_SIZE)
    return [header, cipher.seal(header, plaintext)]


def request_record_into(
    cipher: RecordCipher,
    client_id: bytes,
    code: int,
    plaintext: Buffer,
    out: bytearray | memoryview,
) -> list[bytes | memoryview]:
    """``request_record_pieces`` with the sealed payload in ``out`` (``seal_into``):
    the pieces are valid until ``out`` is used again."""
    header = REQUEST_HEADER.pack(client_id, VERSION, code, len(plaintext) + TAG_SIZE)
    return [header, cipher.seal_into(header, plaintext, out)]


def response_record(cipher: RecordCipher, code: int, plaintext: bytes) -> bytes:
    header = RESPONSE_HEADER.pack(VERSION, code, len(plaintext) + TAG_SIZE)
    return header + cipher.seal(header, plaintext)


# --- record plaintexts -------------------------------------------------------------

_PREFIX = struct.Struct("<IIB")  # file_id, chunk_index, flags
_META = struct.Struct("<Q16sBH")  # file_size, upload_id, digest algorithm, name_len
FLAG_FINAL = 0x01
#: Metadata flag (feature STREAM, docs/PROTOCOL-v4.md section 8.1): the data follows at
#: once, from chunk 1, without waiting for the 1604 resume point.
FLAG_STREAM = 0x02
#: Metadata flag (with STREAM negotiated): make the folder ``name`` (and its parents);
#: file_size 0, no data, no 903. Answered by a 1604 ``file_id ‖ next_chunk = 0`` once
#: the folder is durable, or a 1607. How an empty folder of a tree travels.
FLAG_DIRECTORY = 0x04
#: 903 COMMIT_IF (feature STREAM): "store the file if your digest is this one". A
#: version-4 code only: version 3's table never learns it.
COMMIT_IF = 903
#: 903's flag: the client waits for answers after this file, so the server answers its
#: group now instead of waiting for more files.
FLAG_SYNC_NOW = 0x01
#: Files a client may have unanswered with STREAM (a protocol constant of the feature).
STREAM_WINDOW = 64
#: The same with the WIDE_WINDOW feature also selected (``stream_window``).
WIDE_STREAM_WINDOW = 256


def stream_window(features: int) -> int:
    """Files that may be unanswered with these selected features (0: no STREAM)."""
    if not features & FEATURE_STREAM:
        return 0
    return WIDE_STREAM_WINDOW if features & FEATURE_WIDE_WINDOW else STREAM_WINDOW


def check_file_name(name: str) -> str:
    """A relative UTF-8 path in NFC, checked component by component (``paths``);
    raises ``paths.BadPath`` (a ``ValueError``) with the rule it broke."""
    return paths.check_path(name)


def chunk_count(file_size: int) -> int:
    return max(1, -(-file_size // CHUNK))


@dataclass(frozen=True)
class FileMeta:
    """828 with chunk index 0: what is coming, and under which upload id to resume it."""

    file_id: int
    file_size: int
    upload_id: bytes
    name: str
    #: The whole-file digest the sender wants in 1603 (``file_digest.DigestAlgorithm``).
    digest_algorithm: int = DigestAlgorithm.BLAKE3
    #: Set when decoded: the name broke a rule of ``paths`` (the server answers 1607).
    bad_name: paths.BadPath | None = None
    #: FLAG_STREAM: the data follows without waiting for the resume point.
    stream: bool = False
    #: FLAG_DIRECTORY: an empty folder to make, not a file.
    directory: bool = False

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        flags = (FLAG_STREAM if self.stream else 0) | (FLAG_DIRECTORY if self.directory else 0)
        return (
            _PREFIX.pack(self.file_id, 0, flags)
            + _META.pack(self.file_size, self.upload_id, self.digest_algorithm, len(name))
            + name
        )


@dataclass(frozen=True)
class FileChunk:
    """828 with chunk index 1 to N: the file's bytes, the last one flagged FINAL."""

    file_id: int
    index: int
    final: bool
    data: bytes | memoryview  # decoded: a view of the record's plaintext, not a copy

    def encode(self) -> bytes:
        prefix = _PREFIX.pack(self.file_id, self.index, FLAG_FINAL if self.final else 0)
        return prefix + bytes(self.data)


#: Bytes before a chunk's data in its record's plaintext.
CHUNK_PREFIX_SIZE = _PREFIX.size


def encode_chunk_prefix(file_id: int, index: int, final: bool) -> bytes:
    return _PREFIX.pack(file_id, index, FLAG_FINAL if final else 0)


def decode_file_record(plaintext: bytes | memoryview) -> FileMeta | FileChunk:
    if len(plaintext) < _PREFIX.size:
        raise RecordError("828 record too short")
    file_id, index, flags = _PREFIX.unpack_from(plaintext)
    if flags & ~(FLAG_STREAM | FLAG_DIRECTORY if index == 0 else FLAG_FINAL):
        raise RecordError("828 record has reserved flags set")
    if index == 0:
        body = plaintext[_PREFIX.size :]
        if len(body) < _META.size:
            raise RecordError("malformed file metadata")
        size, upload_id, algorithm, name_len = _META.unpack_from(body)
        raw = bytes(body[_META.size :])
        if len(raw) != name_len:
            raise RecordError("malformed file metadata")
        try:
            name, bad = paths.decode_path(raw), None
        except paths.BadPath as exc:  # well-formed, but a name we refuse: 1607, not a close
            name, bad = raw.decode("utf-8", "replace"), exc
        stream, directory = bool(flags & FLAG_STREAM), bool(flags & FLAG_DIRECTORY)
        if directory and (stream or size):
            raise RecordError("a folder's metadata has no data and no STREAM flag")
        return FileMeta(file_id, size, bytes(upload_id), name, algorithm, bad, stream, directory)
    data = memoryview(plaintext)[_PREFIX.size :]
    return FileChunk(file_id, index, bool(flags & FLAG_FINAL), data)


_U32 = struct.Struct("<I")
_RESUME = struct.Struct("<II")  # file_id, next_chunk
_RECEIVED = struct.Struct("<IQB32s")  # file_id, file_size, digest algorithm, digest


def encode_file_id(file_id: int) -> bytes:
    return _U32.pack(file_id)


def decode_file_id(plaintext: bytes | memoryview) -> int:
    if len(plaintext) != _U32.size:
        raise RecordError("expected a 4-byte file id")
    (file_id,) = _U32.unpack(plaintext)
    return int(file_id)


def encode_resume(file_id: int, next_chunk: int) -> bytes:
    return _RESUME.pack(file_id, next_chunk)


def decode_resume(plaintext: bytes) -> tuple[int, int]:
    if len(plaintext) != _RESUME.size:
        raise RecordError("expected file id and next chunk")
    file_id, next_chunk = _RESUME.unpack(plaintext)
    return int(file_id), int(next_chunk)


def encode_received(
    file_id: int, file_size: int, digest: bytes, algorithm: int = DigestAlgorithm.BLAKE3
) -> bytes:
    return _RECEIVED.pack(file_id, file_size, algorithm, digest)


def decode_received(plaintext: bytes) -> tuple[int, int, int, bytes]:
    """1603: file id, size, digest algorithm (``DigestAlgorithm``), digest."""
    if len(plaintext) != _RECEIVED.size:
        raise RecordError("1603 must carry file id, size, digest algorithm and digest")
    file_id, size, algorithm, digest = _RECEIVED.unpack(plaintext)
    return int(file_id), int(size), int(algorithm), bytes(digest)


_COMMIT_IF = struct.Struct("<IBB32s")  # file_id, flags, digest algorithm, digest
_OUTCOME = struct.Struct("<IB")  # file_id, outcome


@dataclass(frozen=True)
class CommitIf:
    """903: store file ``file_id`` if the server's digest equals ``digest``."""

    file_id: int
    digest: bytes
    digest_algorithm: int = DigestAlgorithm.BLAKE3
    sync_now: bool = False

    def encode(self) -> bytes:
        flags = FLAG_SYNC_NOW if self.sync_now else 0
        return _COMMIT_IF.pack(self.file_id, flags, self.digest_algorithm, self.digest)

    @classmethod
    def decode(cls, plaintext: bytes | memoryview) -> CommitIf:
        if len(plaintext) != _COMMIT_IF.size:
            raise RecordError("903 must carry file id, flags, digest algorithm and digest")
        file_id, flags, algorithm, digest = _COMMIT_IF.unpack(plaintext)
        if flags & ~FLAG_SYNC_NOW:
            raise RecordError("903 has reserved flags set")
        return cls(int(file_id), bytes(digest), int(algorithm), bool(flags & FLAG_SYNC_NOW))


class Outcome(enum.IntEnum):
    """What the server did with a file after a 903 (the 5-byte 1604)."""

    STORED = 0
    DIGEST_DIFFERED = 1  # discarded: the client sends it again, as after a 901


def encode_outcome(file_id: int, outcome: int) -> bytes:
    return _OUTCOME.pack(file_id, outcome)


def decode_outcome(plaintext: bytes) -> tuple[int, Outcome]:
    if len(plaintext) != _OUTCOME.size:
        raise RecordError("expected a file id and an outcome")
    file_id, outcome = _OUTCOME.unpack(plaintext)
    if outcome not in Outcome._value2member_map_:
        raise RecordError(f"unknown outcome {outcome}")
    return int(file_id), Outcome(outcome)


class ErrorCode(enum.IntEnum):
    """The number a 1607 carries, before its message."""

    BAD_REQUEST = 1
    BAD_FILE_NAME = 2
    TOO_LARGE = 3
    REGISTRATION_CLOSED = 4
    BUSY = 5
    INTERNAL = 6
    #: The disk or the registry refused (full, read-only, I/O error): nothing was stored.
    STORAGE = 7
    #: Refused before any data: the file does not fit in the server's free space (less
    #: its margin). The session goes on; the message says how much room there is.
    NO_SPACE = 8
    #: Refused before any data: the file would take the client over its quota.
    OVER_QUOTA = 9
    #: The metadata asks for a digest algorithm the server does not have.
    UNKNOWN_DIGEST = 10


def encode_error(error: int, message: str) -> bytes:
    text = message.encode("ascii", "replace")[:200]
    return struct.pack("<HB", error, len(text)) + text


def decode_error(plaintext: bytes) -> tuple[int, str]:
    if len(plaintext) < 3 or len(plaintext) != 3 + plaintext[2]:
        raise RecordError("malformed 1607")
    (error,) = struct.unpack_from("<H", plaintext)
    return int(error), plaintext[3:].decode("ascii", "replace")
