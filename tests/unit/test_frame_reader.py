"""Version 4's read side (server/eft_server/frame_reader.py), driven by hand through the
transport's calls: what lands where, when reading pauses, how a read ends, and the
record buffers' bookkeeping. No socket; every wait is woken by an event.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import weakref
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


def test_each_event_loop_thread_makes_its_own_spare_buffer() -> None:
    made: list[int] = []

    def in_a_new_thread() -> None:  # its thread-local spare does not exist yet
        spare = frame_reader._spare()
        spare[:3] = b"abc"  # writable
        made.extend([len(spare), int(frame_reader._spare() is spare)])

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert made == [64 * 1024, 1]


def test_a_waiter_that_gives_up_leaves_the_pool_uncontended() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=1, size=16)
        held = pool.take_now()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.take(), 0.01)
        gone = not pool.contended
        assert held is not None
        pool.give_back(held)
        return gone, pool.take_now() is not None

    assert asyncio.run(scenario()) == (True, True)


def test_a_buffer_handed_over_then_cancelled_is_not_counted_against_its_owner() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=2, size=16, per_owner=1)
        bobs = pool.take_now("bob")
        carols = pool.take_now("carol")
        waiting = asyncio.ensure_future(pool.take("alice"))
        await asyncio.sleep(0)
        assert bobs is not None and carols is not None
        pool.give_back(bobs, "bob")  # handed to alice...
        waiting.cancel()  # ...who gave up before she ran: passed on, freed
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return pool.take_now("alice") is not None  # alice holds nothing

    assert asyncio.run(scenario()) is True


def test_a_given_back_buffer_makes_one_more_free_not_two() -> None:
    pool = RecordBuffers(count=1, size=16)
    first = pool.take_now("alice")
    assert first is not None
    pool.give_back(first, "alice")
    assert pool.take_now("bob") is not None
    assert pool.take_now("carol") is None


def test_a_buffer_handed_to_a_waiter_counts_against_its_owner() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=3, size=16, per_owner=2)
        alices = pool.take_now("alice")
        bobs = pool.take_now("bob"), pool.take_now("bob")
        waiting = asyncio.ensure_future(pool.take("alice"))  # her second
        await asyncio.sleep(0)
        assert alices is not None and bobs[0] is not None and bobs[1] is not None
        pool.give_back(bobs[0], "bob")
        await asyncio.wait_for(waiting, 5)
        pool.give_back(bobs[1], "bob")  # one free now
        return pool.take_now("alice") is None, pool.take_now("carol") is not None

    assert asyncio.run(scenario()) == (True, True)


def test_a_cancelled_waiter_is_skipped_before_its_task_runs_again() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=1, size=16)
        held = pool.take_now()
        waiting = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0)
        waiting.cancel()  # its future is cancelled now, its task not yet resumed
        assert held is not None
        pool.give_back(held)  # must not hand the buffer to the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return pool.take_now() is not None

    assert asyncio.run(scenario()) is True


def test_a_freed_buffer_is_not_handed_to_a_waiter_at_its_share() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=2, size=16, per_owner=1)
        mallorys = pool.take_now("mallory")
        alices = pool.take_now("alice")
        waiting = asyncio.ensure_future(pool.take("mallory"))  # over her share
        await asyncio.sleep(0)
        assert mallorys is not None and alices is not None
        pool.give_back(alices, "alice")
        await asyncio.sleep(0)
        served = waiting.done()
        bob = pool.take_now("bob") is not None  # left free for someone else
        waiting.cancel()
        return served, bob

    assert asyncio.run(scenario()) == (False, True)


def test_connections_not_yet_speaking_for_a_client_are_each_their_own_owner() -> None:
    async def scenario() -> list[bool]:
        pool = RecordBuffers(count=2, size=64 * 1024, per_owner=1)
        first = FrameReader(_Transport(), pool)
        second = FrameReader(_Transport(), pool)
        loop = asyncio.get_running_loop()
        for frames in (first, second):
            frames.expect(5000)
            loop.call_soon(_receive, frames, b"r" * 5000)
        fills = [asyncio.ensure_future(frames.fill(3600)) for frames in (first, second)]
        for _ in range(10):  # both served at once: neither waits for the other's buffer
            await asyncio.sleep(0)
        done = [fill.done() for fill in fills]
        for fill in fills:
            fill.cancel()
        return done

    assert asyncio.run(scenario()) == [True, True]


def test_a_reader_taken_over_fills_a_record() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=1, size=64 * 1024)
        frames, _ = _taken_over(b"r" * 5000, pool=pool)
        frames.expect(5000)
        done = await frames.fill(3600)
        return done, pool.take_now() is None  # the reader holds the pool's buffer

    assert asyncio.run(scenario()) == (True, True)


@pytest.mark.parametrize("size", [10, 5000], ids=["small", "record"])
def test_a_wait_under_a_second_is_still_a_wait(size: int) -> None:
    async def scenario() -> bool:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=64 * 1024))
        frames.expect(size)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"a" * (size // 2))
        loop.call_soon(loop.call_soon, _receive, frames, b"b" * (size - size // 2))
        return await frames.fill(0.5)

    assert asyncio.run(scenario()) is True


def test_a_deadline_already_passed_never_reports_an_incomplete_read() -> None:
    async def scenario() -> tuple[bool, bool]:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=64 * 1024))
        frames.expect(10)
        _receive(frames, b"abc")
        # Less than the loop clock's resolution: the deadline is now.
        answer = await frames.fill(1e-15)
        return answer, frames.complete

    assert asyncio.run(scenario()) == (False, False)


def test_a_cut_record_says_how_long_it_held_its_buffer() -> None:
    async def scenario() -> tuple[float, float]:
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=0)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_soon(_receive, frames, b"a" * 100)
        with pytest.raises(RecordTooSlow) as cut:
            await frames.fill(3600)
        return cut.value.seconds, loop.time() - started

    seconds, elapsed = asyncio.run(scenario())
    assert 0 <= seconds <= elapsed + 0.001  # rounded to the millisecond


def test_a_record_is_cut_when_its_grace_runs_out_not_at_the_read_deadline() -> None:
    async def scenario() -> None:
        # A rate nobody keeps and a grace of a twentieth of a second: the reader must
        # wake up for it, with the read's own deadline an hour away.
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=0.05)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"a" * 100)
        await frames.fill(3600)

    with pytest.raises(RecordTooSlow):
        asyncio.run(scenario())


def test_a_small_read_is_never_held_to_the_record_rate() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=0)
        frames = FrameReader(_Transport(), pool)
        frames.expect(4)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"ab")
        loop.call_soon(loop.call_soon, _receive, frames, b"cd")
        return await frames.fill(3600)

    assert asyncio.run(scenario()) is True


def test_a_record_at_the_minimum_rate_gets_the_time_its_bytes_earned() -> None:
    async def scenario() -> bool:
        # One byte per second and no grace: 100 bytes in hand earn 100 s.
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1, grace=0)
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"a" * 100)
        loop.call_soon(loop.call_soon, _receive, frames, b"b" * 4900)
        return await frames.fill(3600)

    assert asyncio.run(scenario()) is True


def test_a_contended_slow_record_is_cut_at_once() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=3600)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"a" * 100)
        filling = asyncio.ensure_future(frames.fill(3600))
        for _ in range(5):
            await asyncio.sleep(0)
        waiting = asyncio.ensure_future(pool.take("bob"))
        for _ in range(10):  # woken, checked, cut: a few turns of the loop, no clock
            await asyncio.sleep(0)
        cut = filling.done() and isinstance(filling.exception(), RecordTooSlow)
        frames.release()
        await asyncio.wait_for(waiting, 5)
        return cut

    assert asyncio.run(scenario()) is True


def test_a_read_of_exactly_a_record_buffer_fits() -> None:
    async def scenario() -> bool:
        frames = FrameReader(_Transport(), RecordBuffers(count=1, size=8192))
        frames.expect(8192)
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 8192)
        return await frames.fill(3600)

    assert asyncio.run(scenario()) is True


def test_a_reader_waiting_for_a_buffer_waits_as_its_owner() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=3, size=64 * 1024, per_owner=1)
        held = {name: pool.take_now(name) for name in ("bob", "carol", "dave")}
        frames = FrameReader(_Transport(), pool)
        frames.owner = "alice"
        frames.expect(5000)
        loop = asyncio.get_running_loop()
        loop.call_soon(_receive, frames, b"r" * 5000)
        filling = asyncio.ensure_future(frames.fill(3600))
        for _ in range(5):
            await asyncio.sleep(0)
        bobs, daves = held["bob"], held["dave"]
        assert bobs is not None and daves is not None
        pool.give_back(bobs, "bob")  # handed to alice's reader
        done = await asyncio.wait_for(filling, 5)
        pool.give_back(daves, "dave")  # one free now
        return done, pool.take_now("alice") is None  # alice is at her share

    assert asyncio.run(scenario()) == (True, True)


def test_a_released_reader_is_not_kept_by_the_pool() -> None:
    pool = RecordBuffers(count=1, size=64 * 1024)  # the server's, living on

    async def scenario() -> weakref.ref[FrameReader]:
        frames = FrameReader(_Transport(), pool)
        frames.expect(5000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 5000)
        assert await frames.fill(3600)
        frames.release()
        return weakref.ref(frames)

    gone = asyncio.run(scenario())
    gc.collect()
    assert gone() is None
