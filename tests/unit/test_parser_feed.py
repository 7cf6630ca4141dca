"""Version 3's read side: received bytes straight into the parser, with flow control
(server/eft_server/parser_feed.py). Driven by hand through the transport's calls.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.parser import NEED_DATA, ParserLimits, RequestParser, RequestRejected
from eft_server import parser_feed
from eft_server.parser_feed import HIGH_WATER, READ_SIZE, ParserFeed, plaintext_buffer

CLIENT = bytes(range(16))
#: An unknown request code: the parser skips its payload and rejects it, consuming it all.
UNKNOWN = 999


def _frame(payload_size: int, version: int = 3) -> bytes:
    return REQUEST_HEADER.pack(CLIENT, version, UNKNOWN, payload_size) + b"p" * payload_size


def _parser() -> RequestParser:
    return RequestParser(ParserLimits(max_skip=4 * HIGH_WATER))


class _StreamProtocol:
    """The StreamReaderProtocol the feed passes the end of the stream on to."""

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Transport:
    def __init__(self, reading: bool = True) -> None:
        self.reading = reading
        self.calls: list[str] = []

    def get_protocol(self) -> Any:
        return _StreamProtocol()

    def set_protocol(self, protocol: Any) -> None:
        self.calls.append("set_protocol")

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.calls.append("pause")
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append("resume")
        self.reading = True

    def is_closing(self) -> bool:
        return False


class _Writer:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


def _receive(feed: ParserFeed, data: bytes) -> None:
    """As a transport does: into the buffer the feed hands out, then tell it."""
    while data:
        buffer = feed.get_buffer(len(data))
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        feed.buffer_updated(size)
        data = data[size:]


def _feed(transport: _Transport | None = None) -> tuple[ParserFeed, RequestParser, _Transport]:
    transport = transport or _Transport()
    parser = _parser()
    return ParserFeed(parser, transport), parser, transport


def _in_a_loop(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` inside an event loop: a StreamReader is made for the running one."""

    @functools.wraps(test)
    def run() -> None:
        async def body() -> None:
            test()

        asyncio.run(body())

    return run


@_in_a_loop
def test_take_over_feeds_the_first_bytes_then_stream_reader_s_and_resumes_reading() -> None:
    frame = _frame(10)
    transport = _Transport(reading=False)  # StreamReader paused it: its buffer was full
    reader = asyncio.StreamReader()
    reader.feed_data(frame[5:])
    parser = _parser()
    feed = ParserFeed.take_over(
        parser, reader, cast(asyncio.StreamWriter, _Writer(transport)), frame[:5]
    )
    assert transport.calls == ["set_protocol", "resume"]
    assert (feed.eof, feed.fresh) == (False, False)
    assert parser.buffered == len(frame)
    _receive(feed, b"later")  # the transport's bytes go to the same parser
    assert parser.buffered == len(frame) + 5
    event = parser.next_event()
    assert isinstance(event, RequestRejected)
    assert event.header.payload_size == 10  # the header came whole, in order


@_in_a_loop
def test_take_over_without_first_bytes_and_reading_leaves_reading_alone() -> None:
    transport = _Transport(reading=True)
    reader = asyncio.StreamReader()
    parser = _parser()
    ParserFeed.take_over(parser, reader, cast(asyncio.StreamWriter, _Writer(transport)), b"")
    assert transport.calls == ["set_protocol"]
    assert parser.buffered == 0


@_in_a_loop
def test_take_over_at_the_end_of_the_stream_does_not_resume_reading() -> None:
    transport = _Transport(reading=False)
    reader = asyncio.StreamReader()
    reader.feed_eof()
    feed = ParserFeed.take_over(
        _parser(), reader, cast(asyncio.StreamWriter, _Writer(transport)), b""
    )
    assert feed.eof is True
    assert "resume" not in transport.calls


def test_fill_answers_at_once_for_bytes_received_meanwhile_then_waits() -> None:
    async def scenario() -> list[bool]:
        feed, _, _ = _feed()
        _receive(feed, b"\x00" * 5)  # while the loop awaited something else
        assert feed.fresh is True
        answers = [await feed.fill(0)]  # no time left, but the bytes came
        answers.append(await feed.fill(0))  # nothing new since: time is up
        answers.append(await feed.fill(-1))
        return answers

    assert asyncio.run(scenario()) == [True, False, False]


def test_fill_waits_for_the_transport_s_next_bytes() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        feed, parser, _ = _feed()
        asyncio.get_running_loop().call_soon(_receive, feed, b"\x00" * 7)
        woken = await feed.fill(3600)
        return woken, feed.fresh, parser.buffered

    assert asyncio.run(scenario()) == (True, False, 7)


def test_the_end_of_the_stream_between_frames_ends_the_session() -> None:
    async def scenario() -> None:
        feed, _, _ = _feed()
        feed.eof_received()
        await feed.fill(3600)

    with pytest.raises(asyncio.IncompleteReadError) as raised:
        asyncio.run(scenario())
    assert (raised.value.partial, raised.value.expected) == (b"", REQUEST_HEADER.size)


def test_the_end_of_the_stream_inside_a_frame_is_a_truncated_message() -> None:
    async def scenario() -> list[bool]:
        feed, _, _ = _feed()
        _receive(feed, _frame(10)[:12])
        feed.eof_received()
        answers = [await feed.fill(3600)]  # the last bytes first
        answers.append(await feed.fill(3600))
        return answers

    with pytest.raises(errors.TruncatedMessage):
        asyncio.run(scenario())


def test_a_connection_lost_with_an_error_raises_it_from_fill() -> None:
    async def scenario() -> None:
        feed, _, _ = _feed()
        _receive(feed, b"\x00" * 3)
        feed.connection_lost(ConnectionResetError("reset"))
        await feed.fill(3600)

    with pytest.raises(ConnectionResetError, match=r"^reset$"):
        asyncio.run(scenario())


def test_bytes_after_the_parser_failed_stop_reading_and_fail_the_next_fill() -> None:
    async def scenario() -> None:
        feed, parser, transport = _feed()
        _receive(feed, _frame(0, version=9))
        with pytest.raises(errors.UnsupportedVersion):
            parser.next_event()
        assert transport.calls == []
        _receive(feed, b"more")
        assert isinstance(feed.error, errors.FramingError)
        assert transport.calls == ["pause"]
        _receive(feed, b"more")  # paused once, not again
        assert transport.calls == ["pause"]
        await feed.fill(3600)

    with pytest.raises(errors.FramingError, match=r"^parser already failed"):
        asyncio.run(scenario())


def test_reading_pauses_at_the_high_water_mark_not_before() -> None:
    feed, parser, transport = _feed()
    _receive(feed, b"\x00" * (HIGH_WATER - 1))
    assert parser.buffered == HIGH_WATER - 1
    assert transport.calls == []
    _receive(feed, b"\x00")
    assert transport.calls == ["pause"]
    _receive(feed, b"\x00")  # a transport may still deliver once: no second pause
    assert transport.calls == ["pause"]


def _paused_with(backlog: int) -> tuple[ParserFeed, RequestParser, _Transport]:
    """A feed paused at the high-water mark, whose parser holds ``backlog`` bytes once
    the loop has taken the first frame out."""
    feed, parser, transport = _feed()
    first = _frame(HIGH_WATER - backlog - REQUEST_HEADER.size)
    _receive(feed, first + _frame(2 * HIGH_WATER)[:backlog])
    assert transport.calls == ["pause"]
    assert isinstance(parser.next_event(), RequestRejected)
    assert parser.buffered == backlog
    return feed, parser, transport


def test_reading_resumes_once_the_parser_holds_less_than_half_the_mark() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        feed, _, transport = _paused_with(HIGH_WATER // 2)
        await feed.fill(0)
        at_half = list(transport.calls)
        feed, _, transport = _paused_with(HIGH_WATER // 2 - 1)
        await feed.fill(0)
        return at_half, transport.calls

    at_half, below = asyncio.run(scenario())
    assert at_half == ["pause"]
    assert below == ["pause", "resume"]


def test_a_failed_feed_is_not_resumed() -> None:
    async def scenario() -> list[str]:
        feed, _, transport = _paused_with(10)
        feed.error = errors.FramingError("failed meanwhile")
        with pytest.raises(errors.FramingError):
            await feed.fill(0)
        return transport.calls

    assert asyncio.run(scenario()) == ["pause"]


def test_the_receive_buffer_shrinks_as_the_parser_fills_never_below_16_kib() -> None:
    feed, parser, _ = _feed()
    assert len(feed.get_buffer(1)) == READ_SIZE
    _receive(feed, b"\x00" * 100_000)
    assert len(feed.get_buffer(1)) == HIGH_WATER - 100_000
    _receive(feed, b"\x00" * (HIGH_WATER - 100_000 - 20 * 1024))
    assert len(feed.get_buffer(1)) == 20 * 1024
    _receive(feed, b"\x00" * 8 * 1024)
    assert len(feed.get_buffer(1)) == 16 * 1024
    assert parser.buffered == HIGH_WATER - 12 * 1024


def test_one_receive_buffer_per_thread_shared_by_every_feed() -> None:
    first, _, _ = _feed()
    second, _, _ = _feed()
    assert first.get_buffer(1).obj is second.get_buffer(1).obj
    assert len(parser_feed._receive_buffer()) == READ_SIZE


def test_the_plaintext_buffer_is_shared_and_holds_the_largest_piece() -> None:
    buffer = plaintext_buffer()
    assert buffer is plaintext_buffer()
    assert len(buffer) == HIGH_WATER + READ_SIZE + 64


def test_received_bytes_reach_the_parser_as_they_came() -> None:
    feed, parser, _ = _feed()
    frames = _frame(3) + _frame(5)
    for byte in frames:  # one byte per read
        _receive(feed, bytes([byte]))
    first, second = parser.next_event(), parser.next_event()
    assert isinstance(first, RequestRejected) and isinstance(second, RequestRejected)
    assert (first.header.payload_size, second.header.payload_size) == (3, 5)
    assert parser.next_event() is NEED_DATA


def test_no_time_left_means_no_wait_even_for_bytes_about_to_come() -> None:
    async def scenario() -> tuple[bool, bool]:
        feed, _, _ = _feed()
        asyncio.get_running_loop().call_soon(_receive, feed, b"\x00")
        quiet = await feed.fill(0)  # answered before the loop runs the delivery
        await asyncio.sleep(0)  # now it has
        return quiet, await feed.fill(0)

    assert asyncio.run(scenario()) == (False, True)


def test_a_wait_shorter_than_a_second_is_still_a_wait() -> None:
    async def scenario() -> bool:
        feed, _, _ = _feed()
        asyncio.get_running_loop().call_soon(_receive, feed, b"\x00")
        return await feed.fill(0.5)

    assert asyncio.run(scenario()) is True


def test_reading_pauses_again_after_a_resume_and_resumes_once() -> None:
    async def scenario() -> list[str]:
        feed, parser, transport = _paused_with(10)
        await feed.fill(0)  # resumed
        await feed.fill(0)  # nothing paused: no second resume
        first = _frame(HIGH_WATER - 10 - REQUEST_HEADER.size)
        _receive(feed, first[10:] + b"x" * 10)  # completes the frame, then past the mark
        assert parser.buffered >= HIGH_WATER
        return transport.calls

    assert asyncio.run(scenario()) == ["pause", "resume", "pause"]


def test_each_event_loop_thread_makes_its_own_buffers_of_the_right_size() -> None:
    made: dict[str, int] = {}

    def in_a_new_thread() -> None:  # its thread-local buffers do not exist yet
        receive = parser_feed._receive_buffer()
        made["receive"] = len(receive)
        receive[:3] = b"abc"  # writable
        made["same"] = int(parser_feed._receive_buffer() is receive)
        plaintext = plaintext_buffer()
        made["plaintext"] = len(plaintext)
        made["same_plaintext"] = int(plaintext_buffer() is plaintext)

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert made == {
        "receive": READ_SIZE,
        "same": 1,
        "plaintext": HIGH_WATER + READ_SIZE + 64,
        "same_plaintext": 1,
    }
