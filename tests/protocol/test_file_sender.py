"""FileSender on its own: the 828 frames it cuts (headers, numbering, sizes), the
ciphertext they carry, the two ways of feeding it (whole frames, zero-copy pieces into a
reused buffer) and its refusals. The session is a stub that records what it is told."""

from __future__ import annotations

import random

import pytest

from eft_protocol import crypto
from eft_protocol.cksum import cksum
from eft_protocol.codes import MAX_PACKETS, PACKET_FIELDS, REQUEST_HEADER, VERSION, RequestCode
from eft_protocol.file_sender import ENCRYPT_PIECE, FileSender, Piece
from eft_protocol.wire import decode_string

CLIENT_ID = bytes(range(16))
KEY = bytes(range(100, 132))
NAME = "report.pdf"


class StubSession:
    def __init__(self) -> None:
        self.sent: list[int] = []

    @property
    def client_id(self) -> bytes:
        return CLIENT_ID

    def _file_sent(self, checksum: int) -> None:
        self.sent.append(checksum)


def parse(frame: bytes) -> tuple[tuple[int, int, int, int, str], bytes]:
    """(content_size, orig_size, number, total, name) and the content of one 828 frame."""
    client_id, version, code, payload_size = REQUEST_HEADER.unpack_from(frame)
    assert (client_id, version, code) == (CLIENT_ID, VERSION, RequestCode.SEND_FILE)
    assert payload_size == len(frame) - REQUEST_HEADER.size
    start = REQUEST_HEADER.size
    content_size, orig, number, total, name = PACKET_FIELDS.unpack_from(frame, start)
    content = frame[start + PACKET_FIELDS.size :]
    return (content_size, orig, number, total, decode_string(name)), content


def send_whole(data: bytes, packet_size: int, splits: list[int]) -> tuple[StubSession, list[bytes]]:
    session = StubSession()
    sender = FileSender(session, NAME, len(data), packet_size, KEY)
    frames: list[bytes] = []
    at = 0
    for cut in [*splits, len(data)]:
        frames += sender.feed(data[at:cut])
        at = cut
    frames += sender.finish()
    return session, frames


def joined(pieces: list[Piece]) -> list[bytes]:
    assert len(pieces) % 2 == 0
    return [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(0, len(pieces), 2)]


@pytest.mark.parametrize("splits", [[], [1], [15, 16, 17], [40, 41], [100]])
def test_frames_number_the_packets_and_carry_the_whole_ciphertext(splits: list[int]) -> None:
    data = bytes(i * 7 % 251 for i in range(130))  # 144 bytes of ciphertext
    session, frames = send_whole(data, 32, splits)
    parsed = [parse(frame) for frame in frames]
    assert [fields for fields, _ in parsed] == [
        (144, 130, number, 5, NAME) for number in range(1, 6)
    ]
    assert [len(content) for _, content in parsed] == [32, 32, 32, 32, 16]
    ciphertext = b"".join(content for _, content in parsed)
    assert ciphertext == crypto.encrypt_file_bytes(KEY, data)
    assert session.sent == [cksum(data)]


def test_the_session_hears_of_the_file_only_when_it_is_finished() -> None:
    session = StubSession()
    data = b"x" * 100
    sender = FileSender(session, NAME, len(data), 32, KEY)
    frames = sender.feed(data)
    assert len(frames) == 3  # 96 of the 112 ciphertext bytes: 16 still wait for the padding
    assert session.sent == []
    assert sender.bytes_sent == 96
    last = sender.finish()
    assert len(last) == 1 and parse(last[0])[0][2:4] == (4, 4)
    assert session.sent == [cksum(data)] == [sender.cksum]
    assert sender.bytes_sent == 112 == sender.content_size


def test_a_packet_size_that_divides_the_ciphertext_leaves_no_short_packet() -> None:
    data = bytes(63)  # 64 bytes of ciphertext
    _, frames = send_whole(data, 16, [5, 33])
    assert [parse(f)[0][2:4] for f in frames] == [(n, 4) for n in range(1, 5)]
    assert all(len(parse(f)[1]) == 16 for f in frames)


def test_an_empty_file_is_one_packet_of_padding() -> None:
    session, frames = send_whole(b"", 4096, [])
    assert len(frames) == 1
    fields, content = parse(frames[0])
    assert fields == (16, 0, 1, 1, NAME)
    assert content == crypto.encrypt_file_bytes(KEY, b"")
    assert session.sent == [cksum(b"")]


def test_packets_grow_to_whole_blocks_when_the_file_needs_more_than_65535() -> None:
    size = MAX_PACKETS * 16 + 5  # padded: 65536 blocks, one too many for 16-byte packets
    sender = FileSender(StubSession(), NAME, size, 16, KEY)
    assert sender.content_size == MAX_PACKETS * 16 + 16
    assert sender.packet_size == 32  # two blocks, not the 17 bytes a bare division gives
    assert sender.total_packets == 32768
    fits = FileSender(StubSession(), NAME, MAX_PACKETS * 16 - 1, 16, KEY)
    assert (fits.packet_size, fits.total_packets) == (16, MAX_PACKETS)
    larger = FileSender(StubSession(), NAME, size, 4096, KEY)
    assert larger.packet_size == 4096  # already large enough: kept
    just = FileSender(StubSession(), NAME, size, 17, KEY)  # ceil(1048576 / 65535) == 17
    assert (just.packet_size, just.total_packets) == (17, 61681)  # just enough: kept too


def test_a_file_of_more_than_65535_small_packets_is_sent_in_grown_ones() -> None:
    data = bytes(i % 251 for i in range(MAX_PACKETS * 16 + 5))
    session = StubSession()
    sender = FileSender(session, NAME, len(data), 16, KEY)
    frames = sender.feed(data) + sender.finish()
    assert len(frames) == 32768
    first, last = parse(frames[0]), parse(frames[-1])
    assert first[0] == (MAX_PACKETS * 16 + 16, len(data), 1, 32768, NAME)
    assert last[0][2:4] == (32768, 32768)
    assert len(first[1]) == len(last[1]) == 32
    assert session.sent == [cksum(data)]


@pytest.mark.parametrize("packet_size", [0, -16])
def test_a_packet_size_that_is_not_positive_is_refused(packet_size: int) -> None:
    with pytest.raises(ValueError, match=r"^packet size must be positive$"):
        FileSender(StubSession(), NAME, 10, packet_size, KEY)


def test_a_file_that_grows_while_it_is_sent_is_refused() -> None:
    sender = FileSender(StubSession(), NAME, 10, 32, KEY)
    sender.feed(b"x" * 10)
    with pytest.raises(ValueError, match=r"^the file grew while it was being sent$"):
        sender.feed(b"y")
    exact = FileSender(StubSession(), NAME, 10, 32, KEY)
    exact.feed(b"x" * 4)
    exact.feed(b"x" * 6)  # exactly the size is not growth


def test_a_file_that_shrinks_while_it_is_sent_is_refused_at_the_finish() -> None:
    session = StubSession()
    sender = FileSender(session, NAME, 10, 32, KEY)
    sender.feed(b"x" * 9)
    with pytest.raises(ValueError, match=r"9 of 10"):
        sender.finish()
    assert session.sent == []


def feed_pieces_into_one_buffer(
    data: bytes, packet_size: int, splits: list[int]
) -> tuple[StubSession, list[bytes]]:
    """As the real client's driver does: one ``out`` buffer reused for every read, each
    call's pieces sent (here: copied) before the next call overwrites the buffer."""
    session = StubSession()
    sender = FileSender(session, NAME, len(data), packet_size, KEY)
    out = bytearray(len(data) + 16)  # room for any one read plus a block
    frames: list[bytes] = []
    at = 0
    for cut in [*splits, len(data)]:
        frames += joined(sender.feed_pieces(data[at:cut], out))
        out[:] = b"\xee" * len(out)  # the driver reuses the buffer
        at = cut
    frames += joined(sender.finish_pieces())
    return session, frames


@pytest.mark.parametrize(
    ("packet_size", "splits"),
    [
        (32, [10, 50, 51, 100]),
        (48, [7, 8, 9, 70]),
        (16, [33, 34]),
        (64, [1, 2, 3, 4, 5]),
        (64, [16, 32, 48]),  # three reads held back unframed, then one packet of them all
    ],
)
def test_pieces_into_a_reused_buffer_give_the_same_frames(
    packet_size: int, splits: list[int]
) -> None:
    data = bytes((i * 31 + 7) % 256 for i in range(120))
    whole_session, whole = send_whole(data, packet_size, splits)
    piece_session, pieces = feed_pieces_into_one_buffer(data, packet_size, splits)
    assert pieces == whole
    assert b"".join(parse(f)[1] for f in pieces) == crypto.encrypt_file_bytes(KEY, data)
    assert piece_session.sent == whole_session.sent == [cksum(data)]


def test_a_packet_that_lies_in_one_chunk_is_not_copied() -> None:
    data = bytes(range(64))  # 64 bytes: four 16-byte blocks, then a padding block
    sender = FileSender(StubSession(), NAME, len(data), 16, KEY)
    out = bytearray(len(data) + 16)
    pieces = sender.feed_pieces(data, out)
    contents = pieces[1::2]
    assert len(contents) == 4  # the last block is held back until the padding comes
    assert all(isinstance(c, memoryview) and c.obj is out for c in contents)
    expected = crypto.encrypt_file_bytes(KEY, data)
    assert b"".join(bytes(c) for c in contents) == expected[:64]


def test_pieces_without_a_buffer_are_encrypted_in_bounded_steps() -> None:
    data = bytes(i % 256 for i in range(ENCRYPT_PIECE * 2 + 100))
    session = StubSession()
    sender = FileSender(session, NAME, len(data), ENCRYPT_PIECE, KEY)
    pieces = sender.feed_pieces(data)
    pieces += sender.finish_pieces()
    frames = joined(pieces)
    assert [parse(f)[0][2:4] for f in frames] == [(1, 3), (2, 3), (3, 3)]
    assert b"".join(parse(f)[1] for f in frames) == crypto.encrypt_file_bytes(KEY, data)
    assert session.sent == [cksum(data)]


@pytest.mark.parametrize("packet_size", range(1, 41))
def test_any_packet_size_and_reads_cut_the_same_ciphertext(packet_size: int) -> None:
    """Packets that start and end anywhere inside the encrypted reads, by both paths."""
    data = bytes((i * 13 + 5) % 256 for i in range(90))
    expected = crypto.encrypt_file_bytes(KEY, data)
    cuts = random.Random(packet_size)
    for _ in range(3):
        splits = sorted(cuts.sample(range(1, len(data)), cuts.randint(0, 6)))
        _, whole = send_whole(data, packet_size, splits)
        _, pieces = feed_pieces_into_one_buffer(data, packet_size, splits)
        for frames in (whole, pieces):
            parsed = [parse(frame) for frame in frames]
            assert b"".join(content for _, content in parsed) == expected
            assert [fields[2] for fields, _ in parsed] == list(range(1, len(frames) + 1))
            assert all(len(content) == packet_size for _, content in parsed[:-1])
