"""The record buffers' fairness and minimum rate (EFT-15's record-buffer flood), driven
by hand: no socket, no clock waited on."""

from __future__ import annotations

import asyncio

import pytest

from eft_server.frame_reader import FrameReader, RecordBuffers, RecordTooSlow
from tests.unit.test_receive_buffers import _receive, _Transport


def test_an_owner_at_its_share_waits_while_another_takes_the_free_buffer() -> None:
    async def scenario() -> list[str]:
        pool = RecordBuffers(count=3, size=16, per_owner=2)
        seen: list[str] = []
        first, _second = pool.take_now("mallory"), pool.take_now("mallory")
        third = asyncio.ensure_future(pool.take("mallory"))
        await asyncio.sleep(0)
        seen.append("mallory waits" if not third.done() else "share ignored")
        seen.append("alice served" if pool.take_now("alice") is not None else "alice starved")
        assert first is not None
        pool.give_back(first, "mallory")  # mallory under its share again: its turn
        await asyncio.wait_for(third, 1)
        seen.append("mallory served")
        return seen

    assert asyncio.run(scenario()) == ["mallory waits", "alice served", "mallory served"]


def test_a_freed_buffer_skips_waiters_over_their_share() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=2, size=16, per_owner=1)
        mallorys = pool.take_now("mallory")
        alices = pool.take_now("alice")
        assert mallorys is not None and alices is not None
        mallory_again = asyncio.ensure_future(pool.take("mallory"))  # first in line
        bob = asyncio.ensure_future(pool.take("bob"))
        await asyncio.sleep(0)
        pool.give_back(alices, "alice")  # mallory is at its share: bob's turn
        await asyncio.wait_for(bob, 1)
        return not mallory_again.done()

    assert asyncio.run(scenario())


def test_no_record_buffer_is_taken_before_the_records_bytes_come() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        pool = RecordBuffers(count=1, size=64 * 1024)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        announced_only = await frames.fill(0.05)
        free_meanwhile = pool.take_now() is not None
        return announced_only, free_meanwhile, frames.complete

    assert asyncio.run(scenario()) == (False, True, False)


def test_with_a_grace_a_record_slower_than_the_minimum_rate_loses_its_buffer() -> None:
    async def scenario() -> None:
        # No grace and an absurd rate: the record is too slow as soon as it is checked,
        # even with nobody waiting (a pool given a grace checks always).
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=0)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"a" * 100)
        try:
            await frames.fill(5)
        finally:
            frames.release()
        raise AssertionError("not cut off")

    with pytest.raises(RecordTooSlow) as cut:
        asyncio.run(scenario())
    assert (cut.value.received, cut.value.size) == (100, 10_000)


def test_a_freed_buffer_goes_to_the_waiter_whose_client_holds_the_fewest() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=2, size=16, per_owner=2)
        mallorys = pool.take_now("mallory"), pool.take_now("mallory")
        mallory_again = asyncio.ensure_future(pool.take("mallory"))  # first in line
        alice = asyncio.ensure_future(pool.take("alice"))
        await asyncio.sleep(0)
        assert mallorys[0] is not None
        pool.give_back(mallorys[0], "mallory")  # mallory holds 1, alice none: alice's
        await asyncio.wait_for(alice, 1)
        newcomer_blocked = pool.take_now("bob") is None  # handed over, not left free
        return not mallory_again.done(), newcomer_blocked

    assert asyncio.run(scenario()) == (True, True)


def test_by_default_a_slow_record_keeps_its_buffer_while_nobody_waits() -> None:
    async def scenario() -> tuple[bool, bool]:
        # The server's pool: a rate nobody keeps, no grace given.
        pool = RecordBuffers(count=2, size=64 * 1024, min_rate=1e12)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"a" * 100)
        filling = asyncio.ensure_future(frames.fill(3600))
        for _ in range(5):  # until the reader holds the buffer and waits for the rest
            await asyncio.sleep(0)
        kept = not filling.done()
        # A second buffer is free, so taking it makes nobody wait: still no cut.
        other = pool.take_now("bob")
        for _ in range(5):
            await asyncio.sleep(0)
        kept_after = not filling.done()
        filling.cancel()
        frames.release()
        assert other is not None
        pool.give_back(other, "bob")
        return kept, kept_after

    assert asyncio.run(scenario()) == (True, True)


def test_a_slow_record_loses_its_grace_once_someone_waits_for_its_buffer() -> None:
    async def scenario() -> tuple[bool, bool]:
        # A grace no test outlives, and a rate nobody keeps: only the waiter can cut it.
        pool = RecordBuffers(count=1, size=64 * 1024, min_rate=1e12, grace=3600)
        frames = FrameReader(_Transport(), pool)
        frames.expect(10_000)
        asyncio.get_running_loop().call_soon(_receive, frames, b"a" * 100)
        filling = asyncio.ensure_future(frames.fill(3600))
        for _ in range(5):  # until the reader holds the buffer and waits for the rest
            await asyncio.sleep(0)
        untouched = not filling.done() and pool.take_now() is None
        waiting = asyncio.ensure_future(pool.take("bob"))
        with pytest.raises(RecordTooSlow):
            await filling
        frames.release()  # as the connection does when it closes
        buffer = await asyncio.wait_for(waiting, 1)
        return untouched, buffer is not None

    assert asyncio.run(scenario()) == (True, True)
