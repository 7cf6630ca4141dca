"""What every connection driver shares, whatever the protocol version.

A driver moves bytes between a socket and a sans-IO session: ``ConnectionBase.run`` is
the life of one connection (count it, bind its log context, serve, clean up), and the
version-specific subclasses (``connection.Connection`` for version 3,
``connection_v4.ConnectionV4``) implement ``_serve`` and ``_on_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.noise import KeyPair

from .config import ServerConfig
from .frame_reader import RecordBuffers
from .metrics import ServerMetrics
from .partial_uploads import PartialStore
from .registry import ServerRegistry
from .storage import FileStore, StorageError

_connection_ids = itertools.count(1)
T = TypeVar("T")


@dataclass
class ServerContext:
    """What every connection shares."""

    config: ServerConfig
    registry: ServerRegistry
    store: FileStore
    metrics: ServerMetrics
    partials: PartialStore | None = None
    static_key: KeyPair | None = None  # version 4's long-term server key
    record_buffers: RecordBuffers | None = None  # version 4's big receive buffers
    #: Open connections per (version, client id), for ``max_sessions_per_client``.
    sessions: Counter[tuple[int, bytes]] = field(default_factory=Counter)


class ReadTimeout(Exception):
    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(kind)
        self.kind, self.seconds = kind, round(seconds, 3)


class ConnectionBase:
    version = 0

    def __init__(
        self,
        context: ServerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        accepted_at: float | None = None,
    ) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.id = next(_connection_ids)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        #: The handshake deadline counts from here: the accept, not the first header.
        self.started = time.monotonic() if accepted_at is None else accepted_at
        self._closing = False
        self._bound_client: bytes | None = None
        self.log: Any = structlog.get_logger("eft.connection")

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(
            connection=self.id, peer=self.peer, version=self.version
        )
        metrics = self.context.metrics
        metrics.connections.labels(str(self.version)).inc()
        metrics.connections_active.inc()
        self.log.info("connection_opened")
        try:
            await self._serve()
        except errors.FramingError as exc:
            self._on_framing_error(exc)
        except ReadTimeout as timeout:
            metrics.timeouts.labels(timeout.kind).inc()
            self.log.info("connection_timeout", kind=timeout.kind, seconds=timeout.seconds)
        except asyncio.IncompleteReadError as exc:
            if exc.partial or exc.expected != REQUEST_HEADER.size:  # cut inside a frame
                self.log.info("connection_lost", error=str(exc))
            # else: the client closed between two requests, as every session ends
        except (ConnectionError, OSError) as exc:
            self.log.info("connection_lost", error=str(exc) or type(exc).__name__)
        finally:
            await self._on_lost()
            await self._close()
            if self._bound_client is not None:
                self.context.sessions[(self.version, self._bound_client)] -= 1
            metrics.connections_active.dec()
            self.log.info("connection_closed")

    # --- for subclasses ---------------------------------------------------------------

    async def _serve(self) -> None:
        raise NotImplementedError

    def _on_framing_error(self, error: errors.ProtocolError) -> None:
        self.log.warning("request_rejected", reason=error.reason, detail=str(error))

    async def _on_lost(self) -> None:
        pass

    async def _read(self, operation: Awaitable[T], kind: str, seconds: float) -> T:
        """Await a read for at most ``seconds``; ``kind`` names the limit in logs."""
        try:
            if seconds <= 0:
                raise TimeoutError
            return await asyncio.wait_for(operation, seconds)
        except TimeoutError:
            if asyncio.iscoroutine(operation):
                operation.close()
            raise ReadTimeout(kind, seconds) from None

    async def _durable(self) -> None:
        """Wait until registry changes are on disk: a response may report them."""
        pending = self.context.registry.flush()
        if pending is not None:
            try:
                await asyncio.wrap_future(pending)
            except sqlite3.Error as exc:
                self.context.registry.revert(pending)  # memory must not keep what the disk lost
                raise StorageError(f"the registry could not be written: {exc}") from exc

    def _bind(self, client_id: bytes) -> None:
        """Count this connection against its client's session limit."""
        if self._bound_client == client_id:
            return
        sessions = self.context.sessions
        if self._bound_client is not None:
            sessions[(self.version, self._bound_client)] -= 1
        structlog.contextvars.bind_contextvars(client_id=client_id.hex())
        self._bound_client = client_id
        sessions[(self.version, client_id)] += 1
        limit = self.context.config.max_sessions_per_client
        if sessions[(self.version, client_id)] > limit:
            raise errors.TooManySessions(f"client already has {limit} connections open")

    def _record(self, event: str, fields: dict[str, Any]) -> None:
        """Count and log something a session noticed."""
        metrics = self.context.metrics
        metrics.session_event(event, fields)
        if event == "registered":
            metrics.registered_clients.set(self.context.registry.client_count())
        if event == "storage_failed":
            self.log.error(event, **fields)  # an operator must see it: a disk, not a peer
        else:
            self.log.info(event, **fields)

    def _send(self, frame: bytes, code: int) -> None:
        self.writer.write(frame)
        self.context.metrics.responses.labels(str(code), str(self.version)).inc()

    async def _close(self) -> None:
        if self.writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):  # the peer is gone already
            await self.writer.drain()
            self.writer.close()
            await self.writer.wait_closed()
