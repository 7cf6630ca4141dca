"""The version-3 server's small facts about one upload (upload_attempt.py): the last
packet number of an attempt, section 8's swapped packet fields, which events belong to
an 828, the code a refusal answers, and the transfer notice's fields."""

from __future__ import annotations

import pytest

from eft_protocol import errors
from eft_protocol.codes import RequestCode, padded_size
from eft_protocol.parser import (
    PacketContent,
    PacketFinished,
    PacketStarted,
    RequestReceived,
    RequestRejected,
)
from eft_protocol.server_table import ServerLimits
from eft_protocol.upload_attempt import (
    Upload,
    is_packet_event,
    request_code,
    sent_numbers,
    transfer_notice,
)
from eft_protocol.wire import CrcOkRequest, PacketHeader, RegisterRequest, RequestHeader

CLIENT_ID = bytes(range(16))


def rejected(code: int) -> RequestRejected:
    return RequestRejected(RequestHeader(CLIENT_ID, 3, code, 0), errors.BadStringField())


def test_a_new_upload_starts_empty_with_a_fresh_checksum() -> None:
    upload = Upload("a.bin", "a.bin", started=5.0)
    assert (upload.attempts, upload.total_packets, upload.received, upload.plain_size) == (
        0,
        0,
        0,
        0,
    )
    assert upload.declared_cipher_size is None and upload.final_cksum is None
    assert upload.cksum.length == 0
    other = Upload("b.bin", "b.bin", started=5.0)
    upload.cksum.update(b"abc")
    assert other.cksum.length == 0  # each upload has its own checksum


@pytest.mark.parametrize(
    ("total", "zero_based", "last"), [(5, False, 5), (5, True, 4), (1, False, 1), (1, True, 0)]
)
def test_the_last_packet_number_depends_on_where_numbering_starts(
    total: int, zero_based: bool, last: int
) -> None:
    upload = Upload("a.bin", "a.bin", 0.0, total_packets=total, zero_based=zero_based)
    assert upload.last_number == last


@pytest.mark.parametrize(
    ("number", "total", "expected"),
    [(3, 7, (3, 7)), (7, 3, (3, 7)), (4, 4, (4, 4)), (0, 1, (0, 1))],
)
def test_swapped_packet_fields_are_put_back(
    number: int, total: int, expected: tuple[int, int]
) -> None:
    assert sent_numbers(number, total) == expected


def test_packet_events_are_the_828_stream_and_its_refusals() -> None:
    header = PacketHeader(CLIENT_ID, 16, 1, 1, 1, "a.bin")
    assert is_packet_event(PacketStarted(header, 16))
    assert is_packet_event(PacketContent(b"x"))
    assert is_packet_event(PacketFinished())
    assert is_packet_event(rejected(RequestCode.SEND_FILE))
    assert not is_packet_event(rejected(RequestCode.CRC_OK))
    assert not is_packet_event(RequestReceived(CrcOkRequest(CLIENT_ID, "a.bin")))


def test_the_code_of_each_kind_of_event() -> None:
    assert request_code(RequestReceived(RegisterRequest(CLIENT_ID, "alice"))) == 825
    assert request_code(rejected(901)) == 901
    assert request_code(rejected(4242)) == 4242  # an unknown code is still reported
    assert request_code(PacketContent(b"x")) == 828
    assert request_code(PacketFinished()) == 828


def test_a_transfer_notice_carries_the_attempt_and_its_sizes() -> None:
    upload = Upload("Sent Name", "sent_name", started=10.0, attempts=2)
    upload.plain_size, upload.received = 100, 112
    notice = transfer_notice("verified", upload, now=12.5, reason="because")
    assert notice.outcome == "verified"
    assert notice.fields == {
        "outcome": "verified",
        "file": "sent_name",
        "attempt": 2,
        "bytes": 100,
        "ciphertext_bytes": 112,
        "duration": 2.5,
        "reason": "because",
    }
    bare = transfer_notice("received", upload)
    assert "duration" not in bare.fields and "reason" not in bare.fields
    at_start = transfer_notice("error", upload, now=10.0)
    assert at_start.fields["duration"] == 0.0  # a time of 0 s is still a duration


def _packet(plain_size: int, content_size: int | None = None) -> PacketHeader:
    """The 828 that starts an attempt; sizes that agree describe the whole file."""
    content = padded_size(plain_size) if content_size is None else content_size
    return PacketHeader(CLIENT_ID, content, plain_size, 1, 1, "a.bin")


def test_attempts_are_counted_up_to_the_limit_then_refused() -> None:
    limits = ServerLimits(max_attempts=3)
    upload = Upload("a.bin", "stored.bin", 0.0)
    for attempt in (1, 2, 3):
        upload.begin_attempt(_packet(10), 1, 1, bytes(32), limits)
        assert upload.attempts == attempt
    with pytest.raises(errors.TooManyAttempts, match=r"^attempt 4 at 'stored\.bin'$"):
        upload.begin_attempt(_packet(10), 1, 1, bytes(32), limits)


def test_a_new_attempt_starts_from_nothing_with_the_sizes_declared() -> None:
    upload = Upload("a.bin", "a.bin", 0.0)
    upload.begin_attempt(_packet(10), 0, 3, bytes(32), ServerLimits())
    upload.received, upload.plain_size = 99, 98
    upload.cksum.update(b"abc")
    upload.begin_attempt(_packet(20), 1, 2, bytes(32), ServerLimits())
    assert (upload.total_packets, upload.zero_based, upload.next_number) == (2, False, 1)
    assert (upload.received, upload.plain_size, upload.cksum.length) == (0, 0, 0)
    assert (upload.declared_cipher_size, upload.declared_plain_size) == (32, 20)
    upload.begin_attempt(_packet(20, content_size=16), 0, 2, bytes(32), ServerLimits())
    assert upload.zero_based is True
    assert (upload.declared_cipher_size, upload.declared_plain_size) == (None, None)


def test_a_declared_size_at_the_limit_passes_one_over_is_refused() -> None:
    limits = ServerLimits(max_file_size=1000)
    upload = Upload("a.bin", "a.bin", 0.0)
    upload.begin_attempt(_packet(1000), 1, 1, bytes(32), limits)
    assert upload.declared_plain_size == 1000
    with pytest.raises(errors.FileTooLarge, match=r"^1001 bytes is over the limit$"):
        upload.begin_attempt(_packet(1001), 1, 1, bytes(32), limits)
    # Sizes that disagree are per packet: not the file's, so not held to the limit.
    upload.begin_attempt(_packet(5000, content_size=16), 1, 1, bytes(32), limits)
