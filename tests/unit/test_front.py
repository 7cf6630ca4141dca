"""The listener's front end (``eft_server.front``): version 4's handshake served in the
transport's callbacks, with no task, and the hand-overs to the stream-based driver.

A real ``Server`` in this process on 127.0.0.1, on asyncio's loop and on uvloop (the
one the server runs): blocking test clients in a thread, the server's log lines as
structlog makes them (with the connection's context merged in), and a task factory
that counts every task the loop creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import struct
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvloop

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.noise import HandshakeState
from eft_protocol.v4 import records as rec
from eft_protocol.v4.handshake import Offer, hello_header, prologue, server_hello_header
from eft_server import proxy_header
from eft_server.app import Server
from eft_server.config import ServerConfig
from eft_server.front import Front
from tests.support.raw_client import RawClient
from tests.v4.wire_client import WireV4, meta_plaintext, new_upload_id

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
Entries = list[MutableMapping[str, Any]]


def run(loop: str, main: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main)


@contextlib.contextmanager
def logged() -> Iterator[Entries]:
    """Every line at every level, with the contextvars merged in as the server's own
    configuration does (``capture_logs`` alone would drop them)."""
    saved = structlog.get_config()
    capture = structlog.testing.LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **config: Any) -> AsyncIterator[Server]:
    settings = ServerConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0, ephemeral=True)
    server = Server(replace(settings, **config))
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


def count_tasks(created: list[asyncio.Task[Any]]) -> None:
    """From now on, every task the running loop creates goes into ``created``, but the
    one asyncio's own loop makes to accept each connection (uvloop makes none)."""

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if "_accept_connection" not in coro.__qualname__:
            created.append(task)
        return task

    asyncio.get_running_loop().set_task_factory(factory)  # type: ignore[arg-type]


async def ended(server: Server) -> None:
    """Until every connection the front end serves is closed or handed over."""
    while server.fronts:
        await asyncio.wait([front.ended() for front in server.fronts])


def of(entries: Entries, event: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in entries if entry["event"] == event]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_handshake_and_log_in_is_served_with_no_task(tmp_path: Path, loop: str) -> None:
    async def main() -> None:
        async with serving(tmp_path) as server:
            address = f"127.0.0.1:{server.port}"
            created: list[asyncio.Task[Any]] = []
            count_tasks(created)
            peer = WireV4(address)
            await asyncio.to_thread(peer.register, "front")
            assert created == [] and not server.tasks  # welcomed, by callbacks alone
            assert len(server.fronts) == 1
            peer.close()
            await ended(server)
            assert created == [] and not server.tasks
            gauge = server.metrics.registry.get_sample_value("eft_connections_active")
            assert gauge == 0

    with logged() as entries:
        run(loop, main())
    opened, registered, closed = (
        of(entries, name)[0] for name in ("connection_opened", "registered", "connection_closed")
    )
    assert opened["version"] == 4 and opened["peer"].startswith("127.0.0.1:")
    assert opened["connection"] == registered["connection"] == closed["connection"]
    assert "client_id" not in opened  # bound once the client is known, as in a task
    assert registered["client_id"] == closed["client_id"]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_served_log_in_is_freed_by_counts_not_by_the_cyclic_collector(
    tmp_path: Path, loop: str
) -> None:
    """Issue 18: the front, its slot and its connection referred to each other, so every
    log-in left about 29 objects to the cyclic collector. With it off, they are freed
    as soon as the transport lets go of the front."""

    async def main() -> None:
        async with serving(tmp_path) as server:
            peer = WireV4(f"127.0.0.1:{server.port}")
            await asyncio.to_thread(peer.register, "freed")
            (front,) = server.fronts
            connection = front._connection
            assert connection is not None
            freed = [weakref.ref(front), weakref.ref(connection), weakref.ref(connection.session)]
            del front, connection
            gc.disable()
            try:
                peer.close()
                await ended(server)
                for _ in range(100):  # loop turns, not time: the transport's own callbacks
                    if all(ref() is None for ref in freed):
                        break
                    await asyncio.sleep(0)
                assert [ref() for ref in freed] == [None, None, None]
            finally:
                gc.enable()

    with logged():
        run(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_the_handshake_deadline_closes_a_silent_peer_at_each_step(
    tmp_path: Path, loop: str
) -> None:
    async def main() -> None:
        async with serving(tmp_path, handshake_timeout=1.0) as server:
            address = f"127.0.0.1:{server.port}"
            silent, after_hello = WireV4(address), WireV4(address)
            await asyncio.to_thread(after_hello.hello)
            assert await asyncio.to_thread(silent.closed_by_server)
            assert await asyncio.to_thread(after_hello.closed_by_server)
            await ended(server)
            timeouts = server.metrics.registry.get_sample_value(
                "eft_connection_timeouts_total", {"kind": "handshake"}
            )
            assert timeouts == 2
            assert not server.tasks

    with logged() as entries:
        run(loop, main())
    before_header, after_hello = sorted(
        of(entries, "connection_timeout"), key=lambda entry: "connection" in entry
    )
    assert before_header["kind"] == after_hello["kind"] == "handshake"
    assert before_header["peer"].startswith("('127.0.0.1'")  # no connection yet
    assert after_hello["version"] == 4 and after_hello["seconds"] <= 1.0
    assert len(of(entries, "connection_closed")) == 1  # opened: the one after its hello


@pytest.mark.parametrize("loop", LOOPS)
def test_a_welcomed_silent_peer_is_closed_at_the_idle_deadline_not_the_handshakes(
    tmp_path: Path, loop: str
) -> None:
    """The handshake's timer stays armed after the welcome (issue 18: one timer less a
    log-in); when it fires first, the front end waits for the idle deadline's rest."""

    async def main() -> None:
        async with serving(tmp_path, handshake_timeout=0.3, idle_timeout=0.6) as server:
            peer = WireV4(f"127.0.0.1:{server.port}")
            await asyncio.to_thread(peer.register, "idler")
            assert await asyncio.to_thread(peer.closed_by_server)
            await ended(server)
            timeouts = server.metrics.registry.get_sample_value(
                "eft_connection_timeouts_total", {"kind": "idle"}
            )
            assert timeouts == 1
            assert not server.tasks

    with logged() as entries:
        run(loop, main())
    (timeout,) = of(entries, "connection_timeout")
    assert (timeout["kind"], timeout["seconds"]) == ("idle", 0.6)
    assert len(of(entries, "connection_closed")) == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_message_3_and_the_first_record_in_one_segment_are_handed_over(
    tmp_path: Path, loop: str
) -> None:
    data = b"hello"

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.hello()
        meta = meta_plaintext(1, len(data), new_upload_id(), "a.txt")
        message_3 = peer.message_3("together", RequestCode.REGISTER)
        peer.send(message_3 + peer.record(RequestCode.SEND_FILE, meta))  # one write
        assert peer.response() == (ResponseCode.REGISTERED, peer.client_id)
        assert peer.response() == (ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
        peer.chunks(1, data)
        code, _ = peer.response()
        verdict = peer.verdict(RequestCode.CRC_OK, 1)
        peer.close()
        assert verdict == (ResponseCode.ACKNOWLEDGED, rec.encode_file_id(1))
        return code, peer.client_id

    async def main() -> None:
        async with serving(tmp_path) as server:
            code, client_id = await asyncio.to_thread(client, f"127.0.0.1:{server.port}")
            assert code == ResponseCode.FILE_RECEIVED
            stored = tmp_path / "data" / "v4" / "files" / client_id.hex() / "a.txt"
            assert stored.read_bytes() == data

    with logged() as entries:
        run(loop, main())
    (verified,) = [entry for entry in of(entries, "transfer") if entry["outcome"] == "verified"]
    # The task's lines carry the context the front end bound.
    opened = of(entries, "connection_opened")[0]
    assert verified["connection"] == opened["connection"] and verified["version"] == 4
    assert verified["peer"] == opened["peer"] and "client_id" in verified


@pytest.mark.parametrize("loop", LOOPS)
def test_a_version_3_connection_is_handed_over_with_its_first_bytes(
    tmp_path: Path, loop: str
) -> None:
    def client(address: str) -> bytes:
        raw = RawClient(address)
        raw.handshake("legacy")  # 825 arrives whole: its header and payload in one read
        raw.sock.close()
        return raw.client_id

    async def main() -> None:
        async with serving(tmp_path, legacy="allow") as server:
            created: list[asyncio.Task[Any]] = []
            count_tasks(created)
            client_id = await asyncio.to_thread(client, f"127.0.0.1:{server.port}")
            assert len(created) == 1  # the stream-based driver's
            await asyncio.wait(created)
            assert server.registry.client_by_id(client_id) is not None

    with logged() as entries:
        run(loop, main())
    assert of(entries, "connection_opened")[0]["version"] == 3
    assert of(entries, "registered")


# --- the PROXY header, one callback at a time -------------------------------------------


class FakeTransport:
    """What the front end calls on a transport, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(bytes(piece) for piece in data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.9.8.7", 1234) if name == "peername" else default


def tcp4(source: str, port: int) -> bytes:
    block = bytes(int(x) for x in source.split(".")) + bytes([127, 0, 0, 1])
    block += struct.pack("!HH", port, 1256)
    return proxy_header.SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block


@pytest.mark.parametrize("cuts", [(5,), (12, 20), (16,), (27, 28)])
def test_a_proxy_header_split_across_segments(tmp_path: Path, cuts: tuple[int, ...]) -> None:
    header = hello_header()
    noise = HandshakeState(initiator=True, static=None, prologue=prologue(header))
    stream = tcp4("192.0.2.9", 40404) + header + noise.write_message(Offer().encode())

    async def main() -> None:
        async with serving(tmp_path, proxy_port=0) as server:
            front, transport = Front(server, proxied=True), FakeTransport()
            front.connection_made(transport)
            edges = [0, *cuts, len(stream)]
            for start, stop in itertools.pairwise(edges):
                assert not transport.written  # nothing answered before message 1 is whole
                front.data_received(stream[start:stop])
            assert transport.written[0][:7] == server_hello_header()
            front.eof_received()
            assert transport.closed and not server.fronts

    with logged() as entries:
        run("asyncio", main())
    opened = of(entries, "connection_opened")[0]
    assert opened["peer"] == "192.0.2.9:40404"  # the PROXY header's, not the socket's


def test_a_health_check_is_answered_by_the_front_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, proxy_port=0) as server:
            front, transport = Front(server, proxied=True), FakeTransport()
            front.connection_made(transport)
            local = proxy_header.SIGNATURE + b"\x20\x00\x00\x00"
            front.data_received(local[:9])
            front.data_received(local[9:])
            assert transport.written == [proxy_header.HEALTH_REPLY] and transport.closed
            assert not server.fronts and len(server.slots) == 0  # no place taken
            checks = server.metrics.registry.get_sample_value(
                "eft_proxy_headers_total", {"result": "health_check"}
            )
            assert checks == 1

    run("asyncio", main())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_welcome_that_waits_for_the_registry_is_handed_over(tmp_path: Path, loop: str) -> None:
    async def main() -> None:
        async with serving(tmp_path, ephemeral=False) as server:  # SQLite: writes to await
            created: list[asyncio.Task[Any]] = []
            count_tasks(created)
            peer = WireV4(f"127.0.0.1:{server.port}")
            await asyncio.to_thread(peer.register, "durable")  # answered once written
            assert len(created) == 1 and not server.fronts
            peer.close()
            await asyncio.wait(created)
            assert server.registry.client_v4_by_key(peer.key.public) is not None

    run(loop, main())


def test_a_shutdown_ends_a_handshake_in_flight_after_the_grace(tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(tmp_path, shutdown_grace=0.1) as server:
            peer = WireV4(f"127.0.0.1:{server.port}")
            await asyncio.to_thread(peer.hello)
            assert len(server.fronts) == 1
            await server.shutdown()  # the grace passes: the handshake is closed
            assert not server.fronts
            assert await asyncio.to_thread(peer.closed_by_server)
            server.shutdown = _done  # type: ignore[method-assign]  # once is enough

    with logged() as entries:
        run("asyncio", main())
    assert of(entries, "shutting_down")[0]["connections"] == 1
    assert len(of(entries, "connection_closed")) == 1


async def _done() -> None:
    pass


def test_a_bug_in_the_handshake_is_logged_and_the_connection_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eft_protocol.v4 import server as v4  # noqa: PLC0415

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(v4.ServerSessionV4, "receive", broken)
    header = hello_header()
    noise = HandshakeState(initiator=True, static=None, prologue=prologue(header))

    async def main() -> None:
        async with serving(tmp_path) as server:
            front, transport = Front(server), FakeTransport()
            front.connection_made(transport)
            front.data_received(header + noise.write_message(Offer().encode()))
            assert transport.closed and not server.fronts and len(server.slots) == 0
            gauge = server.metrics.registry.get_sample_value("eft_connections_active")
            assert gauge == 0

    with logged() as entries:
        run("asyncio", main())
    names = [entry["event"] for entry in entries]
    assert names.index("connection_closed") < names.index("connection_crashed")
    crashed = of(entries, "connection_crashed")[0]
    assert crashed["version"] == 4 and "exc_info" in crashed  # its context, its traceback
