"""904 PACK and its answer 1608: several small whole files in one record (feature PACK).

With STREAM, a small file still costs three records each way (metadata, data, 903;
1604, 1603, 1604) and a state-machine step for each, and a folder of 10,000 files of
1-64 KiB spent most of the server's time on that, not on the files (issue 25). A pack
carries up to ``PACK_FILES`` whole files, each with its name, size and digest, in one
record of at most ``MAX_PLAINTEXT`` bytes; the server stores them with the group they
fall in and answers the pack once, with one outcome per file, only after its files are
durable (docs/PROTOCOL-v4.md section 8.2).

Layouts (little-endian, like every record):

    904  = first_file_id u32 ‖ count u16 ‖ flags u8 ‖ digest_algorithm u8 ‖ entry, count times
    entry = file_size u32 ‖ name_len u16 ‖ digest[32] ‖ name ‖ data[file_size]
    1608 = first_file_id u32 ‖ count u16 ‖ outcome, count times
    outcome = 0 (stored) | 1 (the digest differed) | 2 ‖ error u16 ‖ msg_len u8 ‖ msg

A record whose lengths do not add up exactly is malformed (the server closes); a
well-formed entry the server refuses (its name, its size, no room, something in the
way) gets outcome 2 with a 1607's error number and message, and the pack goes on.
Decoding never copies a file: each entry's data is a view of the record's plaintext.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import paths
from .records import MAX_PLAINTEXT, RecordError, encode_error

#: 904: several small whole files in one record (a version-4 code, like 903).
PACK = 904
#: 1608: the outcome of every file of one 904, sent once they are durable.
PACK_ANSWER = 1608
#: Files in one pack at most. A pack counts its files in the STREAM window, and the
#: server answers a group before the client could be stuck (section 8.2): with the wide
#: window of 256 and groups of 128, a client that cannot send another full pack has more
#: than 192 files unanswered, so the server has answered a group already.
PACK_FILES = 64
#: 904's flag: the client reads answers after this pack (answer the group now).
FLAG_SYNC_NOW = 0x01

_HEAD = struct.Struct("<IHBB")  # first file id, count, flags, digest algorithm
_ENTRY = struct.Struct("<IH32s")  # file size, name length, digest
_ANSWER = struct.Struct("<IH")  # first file id, count
#: Bytes of a pack around its files' names and data.
PACK_HEAD_SIZE = _HEAD.size
ENTRY_HEAD_SIZE = _ENTRY.size
#: The most a file's size and its name's UTF-8 length may add up to for it to fit in a
#: pack alone; a larger file goes on its own (STREAM, or one at a time).
MAX_PACKED_SIZE = MAX_PLAINTEXT - PACK_HEAD_SIZE - ENTRY_HEAD_SIZE


class Outcome:
    """An entry's outcome byte in 1608."""

    STORED = 0
    DIGEST_DIFFERED = 1
    REFUSED = 2


class PackedFile(NamedTuple):
    """One entry of a 904 as decoded: ``data`` is a view of the record, not a copy."""

    file_id: int
    name: str
    digest: bytes
    data: memoryview
    #: The name broke a rule of ``paths`` (the server refuses this entry, error 2).
    bad_name: paths.BadPath | None = None


@dataclass(frozen=True)
class Pack:
    first_file_id: int
    digest_algorithm: int
    sync_now: bool
    files: list[PackedFile]

    @property
    def last_file_id(self) -> int:
        return self.first_file_id + len(self.files) - 1


def pack_size(entries: list[tuple[bytes, int]]) -> int:
    """The plaintext size of a pack of (encoded name, file size) entries."""
    return _HEAD.size + sum(_ENTRY.size + len(name) + size for name, size in entries)


def encode_pack(
    first_file_id: int,
    digest_algorithm: int,
    entries: Sequence[tuple[bytes, bytes, bytes | bytearray | memoryview]],
    *,
    sync_now: bool = False,
) -> bytearray:
    """A 904's plaintext from (encoded name, digest, data) entries, in file-id order."""
    if not 1 <= len(entries) <= PACK_FILES:
        raise ValueError(f"a pack holds 1 to {PACK_FILES} files")
    out = bytearray(
        _HEAD.pack(first_file_id, len(entries), FLAG_SYNC_NOW if sync_now else 0, digest_algorithm)
    )
    for name, digest, data in entries:
        out += _ENTRY.pack(len(data), len(name), digest)
        out += name
        out += data
    if len(out) > MAX_PLAINTEXT:
        raise ValueError(f"a pack is at most {MAX_PLAINTEXT} bytes")
    return out


def decode_pack(plaintext: bytes | bytearray | memoryview) -> Pack:
    """A 904's plaintext; raises ``RecordError`` (the server closes) unless its lengths
    add up exactly. A name that breaks a rule is kept as ``bad_name``, not raised."""
    view = memoryview(plaintext)
    if len(view) < _HEAD.size:
        raise RecordError("904 too short")
    first, count, flags, algorithm = _HEAD.unpack_from(view)
    if flags & ~FLAG_SYNC_NOW:
        raise RecordError("904 has reserved flags set")
    if not 1 <= count <= PACK_FILES:
        raise RecordError(f"904 must carry 1 to {PACK_FILES} files, not {count}")
    if first == 0 or first + count - 1 > 0xFFFF_FFFF:
        raise RecordError("904's file ids are out of range")
    files: list[PackedFile] = []
    at = _HEAD.size
    for number in range(count):
        if len(view) - at < _ENTRY.size:
            raise RecordError("904 ends inside an entry")
        size, name_len, digest = _ENTRY.unpack_from(view, at)
        at += _ENTRY.size
        end = at + name_len + size
        if name_len == 0 or end > len(view):
            raise RecordError("904's entry is longer than the record")
        raw = bytes(view[at : at + name_len])
        try:
            name, bad = paths.decode_path(raw), None
        except paths.BadPath as exc:  # well-formed, but refused: an outcome, not a close
            name, bad = raw.decode("utf-8", "replace"), exc
        files.append(PackedFile(first + number, name, digest, view[at + name_len : end], bad))
        at = end
    if at != len(view):
        raise RecordError("904 has bytes after its last entry")
    return Pack(first, algorithm, bool(flags & FLAG_SYNC_NOW), files)


class Refusal(NamedTuple):
    """Why one entry of a pack was not stored: a 1607's error number and message."""

    error: int
    message: str


def encode_answer(first_file_id: int, outcomes: list[int | Refusal]) -> bytes:
    """1608: one outcome per file of the pack, in its order."""
    out = bytearray(_ANSWER.pack(first_file_id, len(outcomes)))
    for outcome in outcomes:
        if isinstance(outcome, Refusal):
            out.append(Outcome.REFUSED)
            out += encode_error(outcome.error, outcome.message)
        else:
            out.append(outcome)
    return bytes(out)


def decode_answer(plaintext: bytes) -> tuple[int, list[int | Refusal]]:
    """1608's first file id and outcomes; raises ``RecordError`` if malformed."""
    if len(plaintext) < _ANSWER.size:
        raise RecordError("1608 too short")
    first, count = _ANSWER.unpack_from(plaintext)
    outcomes: list[int | Refusal] = []
    at = _ANSWER.size
    for _ in range(count):
        if at >= len(plaintext):
            raise RecordError("1608 ends before its last outcome")
        outcome = plaintext[at]
        at += 1
        if outcome in (Outcome.STORED, Outcome.DIGEST_DIFFERED):
            outcomes.append(outcome)
            continue
        if outcome != Outcome.REFUSED or at + 3 > len(plaintext):
            raise RecordError(f"1608 has an unknown or cut outcome {outcome}")
        (error,) = struct.unpack_from("<H", plaintext, at)
        end = at + 3 + plaintext[at + 2]
        if end > len(plaintext):
            raise RecordError("1608's refusal is longer than the record")
        outcomes.append(Refusal(int(error), plaintext[at + 3 : end].decode("ascii", "replace")))
        at = end
    if at != len(plaintext):
        raise RecordError("1608 has bytes after its last outcome")
    return int(first), outcomes


#: The largest 1608: every file refused with a message of the longest kind.
MAX_ANSWER_SIZE = _ANSWER.size + PACK_FILES * (1 + 3 + 200)
