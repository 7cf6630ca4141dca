"""More of version 4's read side (server/eft_server/frame_reader.py): what the sixth
mutation round found untested in ``fill``, the reader's constructor and release, and
the record buffers' constructor and give-back. Driven by hand through the transport's
calls, as tests/unit/test_frame_reader.py does; where time matters, the event loop's
clock is the test's (``_ClockLoop``), so no wait depends on the machine's speed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from eft_server.frame_reader import FrameReader, RecordBuffers, RecordTooSlow

from .test_frame_reader import _receive, _Transport

T = TypeVar("T")


class _ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it."""

    now = 1000.0

    def time(self) -> float:
        return self.now


def _run(scenario: Callable[[_ClockLoop], Coroutine[Any, Any, T]]) -> T:
    loop = _ClockLoop()
    try:
        return loop.run_until_complete(scenario(loop))
    finally:
        loop.close()


def test_bytes_that_complete_a_read_after_its_deadline_still_complete_it() -> None:
    """The loop was late (busy): the rest of the frame and the deadline's timer are due
    together. The bytes are in, so the read is done, not timed out."""

    async def scenario(loop: _ClockLoop) -> tuple[bool, bytes]:
        frames = FrameReader(_Transport(), RecordBuffers(1, 8192))
        frames.expect(100)

        def late() -> None:
            loop.now += 2.0  # past the deadline (1 s)
            _receive(frames, b"x" * 100)

        loop.call_soon(late)
        filled = await frames.fill(1.0)
        return filled, bytes(frames.view())

    assert _run(scenario) == (True, b"x" * 100)


def test_a_read_woken_at_its_deadline_is_over_even_if_bytes_come_next() -> None:
    """Woken (without bytes) exactly at the deadline: no time is left, the read answers
    False; bytes that come right after are the next read's."""

    async def scenario(loop: _ClockLoop) -> bool:
        frames = FrameReader(_Transport(), RecordBuffers(1, 8192))
        frames.expect(100)

        def at_the_deadline() -> None:
            loop.now += 1.0
            frames.contended()  # a wake-up with no bytes
            loop.call_soon(_receive, frames, b"x" * 100)

        loop.call_soon(at_the_deadline)
        return await frames.fill(1.0)

    assert _run(scenario) is False


def test_a_record_is_cut_at_the_instant_it_falls_below_the_rate() -> None:
    """10 bytes in at 100 bytes/s (no grace): at 0.1 s the record is too slow, however
    much of its read deadline is left."""

    async def scenario(loop: _ClockLoop) -> RecordTooSlow | bool:
        pool = RecordBuffers(1, 8192, min_rate=100.0, grace=0.0)
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)  # a record buffer's read
        _receive(frames, b"r" * 10)
        start = loop.now

        def at_the_rate_s_limit() -> None:
            loop.now = start + 0.0 + 10 / 100.0  # as the reader computes it
            frames.contended()
            loop.call_soon(past_the_deadline)

        def past_the_deadline() -> None:  # only a reader that let the instant pass
            loop.now = start + 10.0

        loop.call_soon(at_the_rate_s_limit)
        try:
            return await frames.fill(5.0)
        except RecordTooSlow as slow:
            return slow

    slow = _run(scenario)
    assert isinstance(slow, RecordTooSlow)
    assert (slow.received, slow.size) == (10, 5000)


def test_a_read_whose_time_ran_out_answers_false_even_if_the_stream_ended_then() -> None:
    """The deadline's timer and the end of the stream come in the same turn of the loop,
    the timer first: the read answers False (its time is up); the end is the next
    read's to report."""

    async def scenario(loop: _ClockLoop) -> tuple[bool, bool]:
        frames = FrameReader(_Transport(), RecordBuffers(1, 8192))
        frames.expect(100)

        def at_the_deadline() -> None:
            loop.now += 1.0  # the timer is due in the next turn, after this one's calls
            loop.call_soon(loop.call_soon, frames.eof_received)  # after the timer's

        loop.call_soon(at_the_deadline)
        return await frames.fill(1.0), frames.eof

    assert _run(scenario) == (False, True)


def test_bytes_that_come_after_a_release_are_the_next_read_s() -> None:
    """A record's read gave up (its deadline passed) and was released: bytes the
    transport delivers next are kept for the next read, not put where the old one was."""

    async def scenario(loop: _ClockLoop) -> tuple[bool, bool, bytes]:
        frames = FrameReader(_Transport(), RecordBuffers(1, 8192))
        frames.expect(5000)  # a record's read: only 10 of its bytes come in time
        _receive(frames, b"r" * 10)

        def later() -> None:
            loop.now += 2.0

        loop.call_soon(later)
        first = await frames.fill(1.0)
        frames.release()
        _receive(frames, b"n" * 20)
        frames.expect(20)
        loop.call_soon(later)  # a reader that lost them waits out its second
        second = await frames.fill(1.0)
        return first, second, bytes(frames.view())

    assert _run(scenario) == (False, True, b"n" * 20)
