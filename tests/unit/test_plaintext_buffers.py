"""The server's version-4 plaintext buffers are bounded server-wide (issue 22's memory
regression): many uploads at once, in this process over loopback, hold no more MiB-sized
buffers than the record buffers and their companion pool (``RecordBuffers.plaintexts``),
whatever the number of connections; every buffer lent comes back; a record whose
plaintext buffer is not free waits for one, then goes on. And the reader's side: a
record takes its plaintext buffer only once whole, lends it, or gives it back with
the record buffer.

The count is of live allocations of at least 1 MiB made by the server's code, from
``tracemalloc``: no RSS threshold, no timing. Before the fix each connection's cipher
kept two 1 MiB buffers of its own for the connection's life, so eight connections held
sixteen, against a bound of four."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
import tracemalloc
from pathlib import Path
from typing import Any

from eft_protocol.codes import REQUEST_HEADER, RequestCode, ResponseCode
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4
from eft_protocol.v4.file_digest import file_digest
from eft_server.connection_v4 import ConnectionV4
from eft_server.frame_reader import FrameReader, RecordBuffers
from tests.v4.wire_client import WAIT, WireV4, new_upload_id

from .in_process_server import make_context
from .test_frame_reader import _receive, _Transport

ACK, RECEIVED = ResponseCode.ACKNOWLEDGED, ResponseCode.FILE_RECEIVED
CLIENTS = 8
RECORD_BUFFERS = 2
SERVER_CODE = f"{os.sep}eft_server{os.sep}"


def _server_big_buffers(snapshot: tracemalloc.Snapshot) -> int:
    """Live blocks of at least a chunk allocated with the server's code on the stack
    (the clients here allocate theirs from the test's and the protocol's code only)."""
    return sum(
        1
        for trace in snapshot.traces
        if trace.size >= rec.CHUNK
        and any(SERVER_CODE in frame.filename for frame in trace.traceback)
    )


def _upload(address: str, index: int, data: bytes, barrier: threading.Barrier) -> list[Any]:
    """A resumable upload of two chunks, verified; then wait, the connection open, until
    every client is there (its chunks written, its cipher alive)."""
    peer = WireV4(address)
    peer.register(f"many{index}")
    answers: list[Any] = [peer.meta(1, len(data), new_upload_id(), f"f{index}.bin")]
    peer.chunks(1, data)
    answers.append(peer.response())
    answers.append(peer.verdict(RequestCode.CRC_OK, 1))
    barrier.wait(WAIT)
    peer.close()
    return answers


async def _serve(context: Any, clients: list[Any]) -> list[Any]:
    """Serve every ``clients[i](address)`` (run in threads) at once; their results."""
    done: list[asyncio.Future[None]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        finished = asyncio.get_running_loop().create_future()
        done.append(finished)
        first = await reader.readexactly(REQUEST_HEADER.size)
        try:
            await ConnectionV4(context, reader, writer, first).run()
        finally:
            finished.set_result(None)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        # Threads of their own: in the loop's default pool they would leave the server
        # none for its own blocking steps (opening an upload) while they wait for it.
        with concurrent.futures.ThreadPoolExecutor(len(clients)) as threads:
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(
                *(loop.run_in_executor(threads, client, address) for client in clients)
            )
        await asyncio.wait_for(asyncio.gather(*done), WAIT)  # a bound, never a margin
    finally:
        server.close()
        await server.wait_closed()
    return list(results)


async def _whole(pool: RecordBuffers, count: int) -> bool:
    """Every buffer of ``pool`` comes back (a chunk's is given back from its writer
    thread through the loop: awaited, with a bound)."""
    taken = [await asyncio.wait_for(pool.take(), WAIT) for _ in range(count)]
    for buffer in taken:
        pool.give_back(buffer)
    return pool.take_now() is not None


def test_many_uploads_at_once_hold_no_more_big_buffers_than_the_pools(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    context.record_buffers = RecordBuffers(RECORD_BUFFERS, v4.MAX_RECORD_PAYLOAD)
    rng = random.Random(22)
    files = [rng.randbytes(2 * rec.CHUNK - index) for index in range(CLIENTS)]
    counts: list[int] = []
    barrier = threading.Barrier(
        CLIENTS, action=lambda: counts.append(_server_big_buffers(tracemalloc.take_snapshot()))
    )
    clients = [
        lambda address, i=index: _upload(address, i, files[i], barrier) for index in range(CLIENTS)
    ]

    async def scenario() -> tuple[list[Any], bool]:
        results = await _serve(context, clients)
        # Eight connections open, each after two chunks: the record buffers and the
        # plaintext buffers at most, not a buffer or two per connection.
        assert counts == [counts[0]] and 0 < counts[0] <= 2 * RECORD_BUFFERS, counts
        plaintexts = context.record_buffers.plaintexts
        assert plaintexts is not None
        return results, await _whole(plaintexts, RECORD_BUFFERS)

    tracemalloc.start(12)
    try:
        results, whole = asyncio.run(scenario())
    finally:
        tracemalloc.stop()
    for data, answers in zip(files, results, strict=True):
        digest = file_digest(data).digest()
        assert answers == [
            (ACK, rec.encode_resume(1, 1)),
            (RECEIVED, rec.encode_received(1, len(data), digest)),
            (ACK, rec.encode_file_id(1)),
        ]
    assert whole


def test_a_record_waits_for_a_plaintext_buffer_and_goes_on_when_one_is_free(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    context.record_buffers = RecordBuffers(1, v4.MAX_RECORD_PAYLOAD)
    plaintexts = context.record_buffers.plaintexts
    assert plaintexts is not None
    data = random.Random(5).randbytes(rec.CHUNK + 7)
    asked = threading.Event()
    take = plaintexts.take

    async def watched_take(owner: object = None) -> memoryview:
        asked.set()  # a whole record asks for a plaintext buffer: none is free
        return await take(owner)

    plaintexts.take = watched_take  # type: ignore[method-assign]

    def client(address: str) -> list[Any]:
        peer = WireV4(address)
        peer.register("waiting")
        answers: list[Any] = [peer.meta(1, len(data), new_upload_id(), "w.bin")]
        peer.chunks(1, data)
        answers.append(peer.response())
        peer.close()
        return answers

    async def scenario() -> tuple[list[Any], bool]:
        held = plaintexts.take_now("someone")  # the only one
        assert held is not None
        serving = asyncio.ensure_future(_serve(context, [client]))
        await asyncio.wait_for(asyncio.to_thread(asked.wait, WAIT), WAIT)
        waited = not serving.done()
        plaintexts.give_back(held, "someone")
        return (await serving)[0], waited

    answers, waited = asyncio.run(scenario())
    assert waited
    assert answers == [
        (ACK, rec.encode_resume(1, 1)),
        (RECEIVED, rec.encode_received(1, len(data), file_digest(data).digest())),
    ]


# --- the reader's side, driven by hand (as tests/unit/test_frame_reader.py does) ---------


def _record_reader(pool: RecordBuffers) -> FrameReader:
    frames = FrameReader(_Transport(), pool)
    frames.expect(5000)  # larger than the reader's own 4 KiB: a record buffer
    return frames


def _plaintexts(pool: RecordBuffers) -> RecordBuffers:
    assert pool.plaintexts is not None
    return pool.plaintexts


def test_an_owner_may_hold_twice_its_record_share_of_plaintext_buffers() -> None:
    assert _plaintexts(RecordBuffers(4, 16, per_owner=1)).per_owner == 2
    assert _plaintexts(RecordBuffers(3, 16, per_owner=2)).per_owner == 3  # at most all
    assert _plaintexts(RecordBuffers(3, 16)).plaintexts is None  # no pool of its own


def test_a_whole_record_lends_its_plaintext_buffer_until_given_back_once() -> None:
    async def scenario() -> list[bool]:
        pool = RecordBuffers(count=1, size=8192)
        plaintexts = _plaintexts(pool)
        frames = _record_reader(pool)
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 5000)
        seen = [await frames.fill(3600), frames.complete]
        lent = frames.lend_plaintext()
        assert lent is not None and len(lent.buffer) == 8192
        frames.expect(REQUEST_HEADER.size)  # the record buffer goes back, not the lent one
        seen.append(frames.lend_plaintext() is None)
        seen.append(plaintexts.take_now() is None)
        lent.give_back()
        lent.give_back()  # once only
        again = plaintexts.take_now()
        seen += [again is not None and again.obj is lent.buffer.obj, plaintexts.take_now() is None]
        return seen

    assert asyncio.run(scenario()) == [True] * 6


def test_a_plaintext_buffer_not_lent_goes_back_with_its_record() -> None:
    async def scenario() -> bool:
        pool = RecordBuffers(count=1, size=8192)
        frames = _record_reader(pool)
        asyncio.get_running_loop().call_soon(_receive, frames, b"r" * 5000)
        assert await frames.fill(3600)
        frames.release()
        return _plaintexts(pool).take_now() is not None

    assert asyncio.run(scenario())


def test_a_record_still_coming_holds_no_plaintext_buffer() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=1, size=8192)
        frames = _record_reader(pool)
        _receive(frames, b"r" * 10)
        filled = await frames.fill(0.01)
        return filled, _plaintexts(pool).take_now() is not None

    assert asyncio.run(scenario()) == (False, True)


def test_a_whole_record_is_not_complete_until_a_plaintext_buffer_is_free() -> None:
    async def scenario() -> list[bool]:
        pool = RecordBuffers(count=1, size=8192)
        plaintexts = _plaintexts(pool)
        held = plaintexts.take_now("someone")
        assert held is not None
        frames = _record_reader(pool)
        _receive(frames, b"r" * 5000)
        seen = [await frames.fill(0.01), frames.complete, await frames.fill(0)]
        plaintexts.give_back(held, "someone")
        seen += [await frames.fill(3600), frames.complete]
        return seen

    assert asyncio.run(scenario()) == [False, False, False, True, True]


def test_a_small_frame_takes_no_plaintext_buffer() -> None:
    async def scenario() -> tuple[bool, bool]:
        pool = RecordBuffers(count=1, size=8192)
        frames = FrameReader(_Transport(), pool)
        frames.expect(REQUEST_HEADER.size)
        asyncio.get_running_loop().call_soon(_receive, frames, bytes(REQUEST_HEADER.size))
        assert await frames.fill(3600)
        return frames.lend_plaintext() is None, _plaintexts(pool).take_now() is not None

    assert asyncio.run(scenario()) == (True, True)
