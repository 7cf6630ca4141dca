"""The buffer strategies under the one connection loop (``driver.ConnectionBase._serve``).

The loop may come back to a ``fill`` whose wait ended before its deadline had passed
(``ReadDeadlines.on_deadline`` says so): what was received by then must still be there.
Driven by hand through the transport's calls, with no socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eft_protocol.parser import NEED_DATA, ParserLimits, RequestParser
from eft_server.frame_reader import FrameReader, RecordBuffers
from eft_server.parser_feed import ParserFeed


class _Transport:
    """Just what a take-over protocol calls on its transport."""

    def __init__(self) -> None:
        self.reading = False

    def get_protocol(self) -> Any:
        return None

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _receive(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """As a transport does: into the buffer the protocol hands out, then tell it."""
    while data:
        buffer = protocol.get_buffer(len(data))
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        protocol.buffer_updated(size)
        data = data[size:]


def test_a_record_fill_cut_short_keeps_what_came_and_resumes() -> None:
    async def scenario() -> tuple[bool, bool, bytes, bool]:
        pool = RecordBuffers(count=1, size=64 * 1024)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)  # larger than the reader's own buffer: a record buffer
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"a" * 6_000)
        first = await frames.fill(0.2)  # only part came: time runs out
        loop.call_soon(_receive, frames, b"b" * 4_000)
        second = await frames.fill(5)
        lent = pool.take_now() is None  # the only record buffer is still the reader's
        return first, second, bytes(frames.view()), lent

    first, second, view, lent = asyncio.run(scenario())
    assert (first, second, lent) == (False, True, True)
    assert view == b"a" * 6_000 + b"b" * 4_000


def test_bytes_before_an_expect_are_served_first() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
        frames.expect(4)
        _receive(frames, b"headbody")  # no fill asked yet: kept aside
        assert await frames.fill(5)
        head = bytes(frames.view())
        frames.expect(4)
        assert await frames.fill(5)
        return head, bytes(frames.view())

    assert asyncio.run(scenario()) == (b"head", b"body")


def test_the_v3_feed_reports_a_quiet_wait_then_the_bytes() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        parser = RequestParser(ParserLimits())
        feed = ParserFeed(parser, _Transport())
        quiet = await feed.fill(0.05)
        asyncio.get_running_loop().call_soon(_receive, feed, b"\x00" * 5)
        woken = await feed.fill(5)
        return quiet, woken, parser.next_event() is NEED_DATA

    assert asyncio.run(scenario()) == (False, True, True)
