"""One server connection run in this process, over a real loopback socket.

The server side is a ``connection.Connection`` or ``connection_v4.ConnectionV4`` built
on a ``ServerContext`` the test holds (its registry, store, metrics and config), run by
an asyncio server on 127.0.0.1 with a port the kernel picks; the client side is a
blocking test client (``RawClient``, ``WireV4``) run in a thread, so the test can
assert both what went over the wire and what the connection did to its context.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import server as v4
from eft_protocol.v4.admission import HelloGate
from eft_server.config import ServerConfig
from eft_server.connection import Connection
from eft_server.connection_v4 import ConnectionV4
from eft_server.driver import ConnectionBase, ServerContext
from eft_server.file_store import LocalFileStore, LocalUnfinishedUploads
from eft_server.frame_reader import RecordBuffers
from eft_server.metrics import ServerMetrics
from eft_server.partial_uploads import PartialStore, partial_quota
from eft_server.registry import EphemeralRegistry, ServerRegistry

T = TypeVar("T")


def make_context(
    data_dir: Path, registry: ServerRegistry | None = None, **config: Any
) -> ServerContext:
    """A context as ``app.Server`` builds one, with an in-memory registry by default."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = replace(ServerConfig(data_dir=data_dir, ephemeral=True), **config)
    return ServerContext(
        settings,
        registry if registry is not None else EphemeralRegistry(),
        LocalFileStore(data_dir),
        ServerMetrics(CollectorRegistry()),
        partials=LocalUnfinishedUploads(PartialStore(data_dir, partial_quota(settings))),
        static_key=KeyPair.generate(),
        record_buffers=RecordBuffers(4, v4.MAX_RECORD_PAYLOAD),
        hello_gate=HelloGate(cookies_above=None, rate_per_address=None),
    )


def value(context: ServerContext, name: str, **labels: str) -> float:
    """A metric's sample, 0 when it was never touched."""
    sample = context.metrics.registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


async def _serve_one(context: ServerContext, client: Callable[[str], T]) -> tuple[T, Any]:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[ConnectionBase[Any]] = loop.create_future()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(REQUEST_HEADER.size)
        # The version byte (as app.Server routes it): 4 for version 4, else 3.
        connection: ConnectionBase[Any]
        if first[16] == 4:
            connection = ConnectionV4(context, reader, writer, first)
        else:
            connection = Connection(context, reader, writer, first)
        try:
            await connection.run()
        finally:
            finished.set_result(connection)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(client, f"127.0.0.1:{port}")
        connection = await asyncio.wait_for(finished, 60)  # a bound, never a margin
    finally:
        server.close()
        await server.wait_closed()
    return result, connection


def serve_one(context: ServerContext, client: Callable[[str], T]) -> tuple[T, Any]:
    """Run ``client(address)`` in a thread against one connection served with
    ``context``; the client's result and the connection, once it has finished."""
    return asyncio.run(_serve_one(context, client))


@contextlib.contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog's entries, whatever level an earlier test configured (capture_logs
    replaces the processors, not the level filter)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


def events(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]
