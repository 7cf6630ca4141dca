"""Version 4 holds a whole record before checking its tag; the server bounds how many it
holds at once (``--record-buffers``), so memory does not grow with the uploads in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from eft_server.frame_reader import RecordBuffers
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file

MiB = 1 << 20


def test_a_buffer_is_lent_to_one_reader_at_a_time_and_reused() -> None:
    async def scenario() -> list[str]:
        pool = RecordBuffers(count=1, size=16)
        seen: list[str] = []
        first = await pool.take()
        waiting = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0.05)
        seen.append("waiting" if not waiting.done() else "not bounded")
        pool.give_back(first)
        second = await asyncio.wait_for(waiting, 1)
        seen.append("reused" if second is first else "new buffer")
        return seen

    assert asyncio.run(scenario()) == ["waiting", "reused"]


def test_a_waiter_cancelled_after_its_wake_up_passes_the_buffer_on() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=1, size=16)
        held = await pool.take()
        first = asyncio.ensure_future(pool.take())
        second = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0)
        pool.give_back(held)  # wakes ``first``...
        first.cancel()  # ...which is cancelled before it runs
        buffer = await asyncio.wait_for(second, 1)
        return buffer is held and first.cancelled()

    assert asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    async def scenario() -> int:
        pool = RecordBuffers(count=1, size=16)
        held = await pool.take()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.take(), 0.05)
        pool.give_back(held)
        again = pool.take_now()
        return 0 if again is held and pool.take_now() is None else 1

    assert asyncio.run(scenario()) == 0


def test_many_uploads_through_one_record_buffer_all_arrive(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--record-buffers", "1")
    sources = [write_random_file(tmp_path / f"s{i}.bin", 3 * MiB + i, seed=i) for i in range(6)]
    clients = []
    for index in range(len(sources)):
        client = client_factory(f"queue{index}", server.address)
        client.protocol = 4
        clients.append(client)
    procs = [client.start([source]) for client, source in zip(clients, sources, strict=True)]
    for proc in procs:
        run = finish(proc, timeout=120)
        assert run.returncode == 0, run.stderr
    for client, source in zip(clients, sources, strict=True):
        stored = server.data_dir / "v4" / "files" / client.client_id_hex / source.name
        assert stored.read_bytes() == source.read_bytes()


def test_never_more_buffers_lent_at_once_than_the_limit() -> None:
    """The limit limits: ten readers contend for three buffers; at no moment do more than
    three hold one, only three are ever made, and every reader is served in the end."""

    async def scenario() -> tuple[int, int, int]:
        pool = RecordBuffers(count=3, size=16)
        holding: set[int] = set()
        most = 0
        made: set[int] = set()
        go = asyncio.Event()

        async def reader(number: int) -> None:
            nonlocal most
            buffer = await pool.take()
            holding.add(number)
            made.add(id(buffer.obj))
            most = max(most, len(holding))
            await go.wait()  # hold it until every reader has asked
            holding.discard(number)
            pool.give_back(buffer)

        tasks = [asyncio.ensure_future(reader(n)) for n in range(10)]
        while len(holding) < 3:  # the first three are served at once
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)  # the other seven have had every chance to take one
        assert len(holding) == 3 and pool.take_now() is None
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return most, len(made), len(holding)

    assert asyncio.run(scenario()) == (3, 3, 0)
