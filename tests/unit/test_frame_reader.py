"""Version 4's read side (server/eft_server/frame_reader.py), driven by hand through the
transport's calls: what lands where, when reading pauses, how a read ends, and the
record buffers' bookkeeping. No socket; every wait is woken by an event.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, cast

import pytest

from eft_server import frame_reader
from eft_server.frame_reader import FrameReader, RecordBuffers, RecordTooSlow


class _StreamProtocol:
    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Transport:
    def __init__(self, *, closing: bool = False) -> None:
        self.calls: list[str] = []
        self.closing = closing

    def get_protocol(self) -> Any:
        return _StreamProtocol()

    def set_protocol(self, protocol: Any) -> None:
        self.calls.append("set_protocol")

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


def _receive(protocol: FrameReader, data: bytes) -> None:
    while data:
        buffer = protocol.get_buffer(len(data))
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        protocol.buffer_updated(size)
        data = data[size:]


def _in_a_loop(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` inside an event loop: a StreamReader is made for the running one."""

    @functools.wraps(test)
    def run() -> None:
        async def body() -> None:
            test()

        asyncio.run(body())

    return run


def _taken_over(
    backlog: bytes = b"", *, closing: bool = False, pool: RecordBuffers | None = None
) -> tuple[FrameReader, _Transport]:
    transport = _Transport(closing=closing)
    reader = asyncio.StreamReader()
    if backlog:
        reader.feed_data(backlog)
    frames = FrameReader.take_over(
        reader,
        cast(asyncio.StreamWriter, _Writer(transport)),
        pool or RecordBuffers(count=1, size=64 * 1024),
        b"HEAD",
    )
    return frames, transport


@_in_a_loop
def test_the_first_header_is_in_view_and_reading_waits_for_a_fill() -> None:
    frames, transport = _taken_over()
    assert frames.complete
    assert bytes(frames.view()) == b"HEAD"
    assert transport.calls == ["set_protocol", "pause"]


@_in_a_loop
def test_a_closing_transport_is_not_paused() -> None:
    _, transport = _taken_over(closing=True)
    assert transport.calls == []


def test_stream_reader_s_bytes_are_served_first() -> None:
    async def scenario() -> tuple[bytes, list[str]]:
        frames, transport = _taken_over(b"next-frame")
        frames.expect(4)
        assert await frames.fill(3600)
        calls = list(transport.calls)
        return bytes(frames.view()), calls

    view, calls = asyncio.run(scenario())
    assert view == b"next"
    assert calls == ["set_protocol", "pause"]  # served from what was kept: no read


def test_a_fill_with_no_time_left_answers_false_at_once() -> None:
    async def scenario() -> list[bool]:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
        frames.expect(4)
        _receive(frames, b"abcd")  # even with the bytes there
        return [await frames.fill(0), await frames.fill(-1), frames.complete]

    assert asyncio.run(scenario()) == [False, False, False]


def test_small_reads_land_in_the_reader_s_own_buffer_exactly() -> None:
    async def scenario() -> tuple[bytes, list[str], bool, int]:
        transport = _Transport()
        pool = RecordBuffers(count=1, size=64 * 1024)
        frames = FrameReader(transport, pool)
        frames.expect(4096)
        region = frames.get_buffer(65536)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"x" * 4000)
        loop.call_soon(_receive, frames, b"y" * 96)
        assert await frames.fill(3600)
        free = pool.take_now() is not None  # no record buffer for a small read
        return bytes(frames.view()), transport.calls, free, len(region)

    view, calls, free, region = asyncio.run(scenario())
    assert view == b"x" * 4000 + b"y" * 96
    assert calls == ["resume", "pause"]  # not paused after the first part: once all came
    assert free
    assert region == 4096  # the transport is offered exactly what is wanted


def test_bytes_beyond_the_read_wait_for_the_next_one() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
        _receive(frames, b"early")  # nothing expected yet: kept aside, a little at a time
        frames.expect(3)
        assert await frames.fill(3600)
        first = bytes(frames.view())
        frames.expect(4)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"ly!")
        assert await frames.fill(3600)
        second = bytes(frames.view())
        frames.expect(1)
        assert not frames.complete  # until a fill places what was kept
        assert await frames.fill(3600)
        return first, second, bytes(frames.view())

    assert asyncio.run(scenario()) == (b"ear", b"lyly", b"!")


def test_a_spare_piece_is_at_most_4_kib_and_shared() -> None:
    frames = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
    other = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
    spare = frames.get_buffer(1 << 20)
    assert len(spare) == 4096
    assert spare.obj is other.get_buffer(1).obj
    assert len(frame_reader._spare()) == 64 * 1024


def test_the_end_of_the_stream_inside_a_read_hands_over_what_came() -> None:
    async def scenario() -> None:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=1024))
        frames.expect(10)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"abc")
        loop.call_soon(frames.eof_received)
        await frames.fill(3600)

    with pytest.raises(asyncio.IncompleteReadError) as ended:
        asyncio.run(scenario())
    assert (ended.value.partial, ended.value.expected) == (b"abc", 10)


def test_the_end_of_the_stream_before_a_record_s_first_byte() -> None:
    async def scenario() -> None:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=64 * 1024))
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(frames.eof_received)
        await frames.fill(3600)

    with pytest.raises(asyncio.IncompleteReadError) as ended:
        asyncio.run(scenario())
    assert (ended.value.partial, ended.value.expected) == (b"", 10_000)


@pytest.mark.parametrize("size", [10, 10_000], ids=["small", "record"])
def test_a_lost_connection_s_error_is_raised_by_the_fill(size: int) -> None:
    async def scenario() -> None:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=64 * 1024))
        frames.expect(size)
        asyncio.get_running_loop().call_soon(frames.connection_lost, ConnectionResetError("reset"))
        await frames.fill(3600)

    with pytest.raises(ConnectionResetError, match=r"^reset$"):
        asyncio.run(scenario())


def test_a_read_larger_than_a_record_buffer_is_refused() -> None:
    async def scenario() -> None:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=8192))
        frames.expect(8193)
        await frames.fill(3600)

    with pytest.raises(ValueError, match=r"^a read of 8193 bytes is larger than 8192$"):
        asyncio.run(scenario())


def test_a_record_buffer_is_counted_against_the_owner_and_given_back() -> None:
    async def scenario() -> tuple[bytes, bool, bool, bool]:
        pool = RecordBuffers(count=2, size=64 * 1024, per_owner=1)
        frames = FrameReader(_Transport(), pool)
        frames.owner = "alice"
        frames.expect(5000)  # larger than the reader's 4 KiB: a record buffer
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 5000)
        assert await frames.fill(3600)
        view = bytes(frames.view())
        alice_at_share = pool.take_now("alice") is None
        bob_served = pool.take_now("bob") is not None
        frames.expect(4)  # the record is no longer needed: its buffer goes back
        alice_again = pool.take_now("alice") is not None
        return view, alice_at_share, bob_served, alice_again

    assert asyncio.run(scenario()) == (b"r" * 5000, True, True, True)


def test_a_record_that_waits_too_long_for_a_buffer_answers_false() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=1, size=64 * 1024)
        held = pool.take_now("someone")
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)
        _receive(frames, b"r" * 10)  # its first bytes came: it asks for a buffer
        timed_out = await frames.fill(0.01)
        assert held is not None
        pool.give_back(held, "someone")
        return timed_out, pool.take_now() is not None  # the waiter left no trace

    assert asyncio.run(scenario()) == (False, True)


def test_release_twice_gives_back_once() -> None:
    async def scenario() -> int:
        pool = RecordBuffers(count=1, size=64 * 1024)
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 5000)
        assert await frames.fill(3600)
        frames.release()
        frames.release()
        return sum(pool.take_now() is not None for _ in range(3))

    assert asyncio.run(scenario()) == 1


def test_contended_only_with_every_buffer_lent_and_someone_waiting() -> None:
    async def scenario() -> list[bool]:
        pool = RecordBuffers(count=1, size=16)
        seen = [pool.contended]
        held = pool.take_now()
        seen.append(pool.contended)  # all lent, nobody waits
        waiter = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0)
        seen.append(pool.contended)
        assert held is not None
        pool.give_back(held)
        await waiter
        seen.append(pool.contended)
        return seen

    assert asyncio.run(scenario()) == [False, False, True, False]


def test_a_holder_is_told_when_someone_starts_waiting() -> None:
    class Holder:
        told = 0

        def contended(self) -> None:
            self.told += 1

    async def scenario() -> tuple[int, int]:
        pool = RecordBuffers(count=1, size=16)
        holder, gone = Holder(), Holder()
        held = pool.take_now()
        pool.holding(holder, True)
        pool.holding(gone, True)
        pool.holding(gone, False)
        pool.holding(gone, False)  # twice: harmless
        waiter = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0)
        assert held is not None
        pool.give_back(held)
        await waiter
        return holder.told, gone.told

    assert asyncio.run(scenario()) == (1, 0)


def test_buffers_are_made_once_and_reused() -> None:
    pool = RecordBuffers(count=2, size=16)
    first = pool.take_now()
    assert first is not None and len(first) == 16
    pool.give_back(first)
    again = pool.take_now()
    assert again is not None and again.obj is first.obj
    second = pool.take_now()
    assert second is not None and second.obj is not first.obj
    assert pool.take_now() is None


def test_too_slow_says_how_much_came_in_how_long() -> None:
    slow = RecordTooSlow(100, 10_000, 2.34567)
    assert str(slow) == "100 of 10000 bytes in 2.3 s"
    assert (slow.received, slow.size, slow.seconds) == (100, 10_000, 2.346)


def test_a_record_keeping_the_rate_within_its_grace_is_not_cut() -> None:
    async def scenario() -> bool:
        # A rate of one byte per second, with an hour's grace: far from cut.
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1, grace=3600)
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"a" * 100)
        loop.call_soon(loop.call_soon, _receive, frames, b"b" * 4900)
        return await frames.fill(3600)

    assert asyncio.run(scenario()) is True
