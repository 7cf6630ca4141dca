"""The one connection loop, whatever the protocol version.

A driver moves bytes between a socket and a sans-IO session: ``ConnectionBase.run`` is
the life of one connection (count it, bind its log context, serve, clean up) and
``_serve`` its loop: what the session can take from the bytes already received goes in
with the time, its effects are carried out (``_apply``), answers are flushed, and the
loop waits for more bytes until the core's deadline (``eft_protocol.deadlines``).

What differs per version is only how bytes are received (the buffer strategy:
``parser_feed.ParserFeed`` for version 3, ``frame_reader.FrameReader`` for version 4)
and how each effect maps onto storage and the registry: the subclasses
``connection.Connection`` and ``connection_v4.ConnectionV4`` implement the hooks below
the loop (``_take``, ``_deadline``, ``_apply_one``, ``_storage_failed``, ...).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog

from eft_protocol import errors
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.deadlines import Deadline, ReadDeadlines, TimeLimits
from eft_protocol.noise import KeyPair
from eft_protocol.notices import (
    ClientReconnected,
    ClientRegistered,
    KeyExchanged,
    Notice,
    StorageFailure,
)
from eft_protocol.v4.admission import HelloGate

from . import proxy_header
from .config import ServerConfig
from .file_store import FileStore, UnfinishedUploads
from .frame_reader import RecordBuffers, RecordTooSlow
from .metrics import ServerMetrics
from .registry import ServerRegistry
from .registry_errors import NameTaken, RegistryError, RegistryUnreachable
from .storage import StorageError

_connection_ids = itertools.count(1)
#: Notices after which the connection speaks for a client: it counts against its limit.
IDENTIFYING = (ClientRegistered, ClientReconnected, KeyExchanged)
#: Every connection's logger: its context is bound with contextvars, so one lazy proxy
#: serves them all (one per connection was a logger built per connection, issue 18).
#: It follows ``configure_logging`` as any module's logger does (``log.CACHE_LOGGERS``).
_CONNECTION_LOG = structlog.get_logger("eft.connection")
#: A session's effect type (``server_session.Effect``, ``v4.server.Effect``).
E = TypeVar("E")


@dataclass
class ServerContext:
    """What every connection shares."""

    config: ServerConfig
    registry: ServerRegistry
    store: FileStore
    metrics: ServerMetrics
    partials: UnfinishedUploads | None = None
    static_key: KeyPair | None = None  # version 4's long-term server key
    #: During a key rotation, the key announced as the next one (NEXT_KEY); the
    #: control socket replaces both at ``rotate-key`` and ``--retire``.
    next_static_key: KeyPair | None = None
    #: The version-4 hello's "open registration" flag: anyone may register a free name.
    open_registration: bool = True
    record_buffers: RecordBuffers | None = None  # version 4's big receive buffers
    #: Version 4's message 1s: DH, cookie reply or refusal (``eft_protocol.v4.admission``).
    hello_gate: HelloGate | None = None
    #: Open connections per (version, client id), for ``max_sessions_per_client``.
    sessions: Counter[tuple[int, bytes]] = field(default_factory=Counter)


class RegistrationLost(StorageError):
    """The registration this connection just made lost to another replica's (the
    database's unique name): its client is answered as for a taken name, not an error."""


class ReadTimeout(Exception):
    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(kind)
        self.kind, self.seconds = kind, round(seconds, 3)


class ReceiveBuffers(Protocol):
    """A version's buffer strategy: where received bytes go until the session takes them."""

    async def fill(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for the bytes the session needs next; False if time
        runs out first. Raises ``IncompleteReadError`` (or the connection's error) when
        the stream ends."""
        ...


class ConnectionBase(Generic[E]):
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
        peer = proxy_header.peer_of(writer)  # the client's, also through HAProxy
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        #: The handshake deadline counts from here: the accept, not the first header.
        self.started = time.monotonic() if accepted_at is None else accepted_at
        self._closing = False
        config = context.config
        limits = TimeLimits(config.idle_timeout, config.read_timeout, config.handshake_timeout)
        self.deadlines = ReadDeadlines(limits, self.started)
        self._bound_client: bytes | None = None
        #: Called once, when the connection first speaks for a client (``slots``).
        self.on_authenticated: Callable[[], None] | None = None
        #: A registry flush started for the first answer ``_durable`` waits for.
        self.flushing: concurrent.futures.Future[None] | None = None
        self.log: Any = _CONNECTION_LOG

    @property
    def authenticated(self) -> bool:
        """The connection speaks for a client (825/827 done, or version 4's handshake
        and intent): it is never shed for a newcomer (``slots``)."""
        return self._bound_client is not None

    async def run(self) -> None:
        self.opened()
        await self.served()

    def opened(self) -> None:
        """Count the connection and bind its log context (in the context it runs in:
        its task's, or the listener's front end's for a version-4 handshake)."""
        structlog.contextvars.bind_contextvars(
            connection=self.id, peer=self.peer, version=self.version
        )
        metrics = self.context.metrics
        metrics.connections_by_version[str(self.version)].inc()
        metrics.connections_active.inc()
        self.log.info("connection_opened")

    async def served(self, pending: list[E] | None = None) -> None:
        """The rest of the connection's life, once ``opened``: ``pending`` are effects
        of an input already taken (by the front end, ``front``) to carry out first."""
        metrics = self.context.metrics
        try:
            await self._serve(pending)
        except errors.FramingError as exc:
            self._on_framing_error(exc)
        except ReadTimeout as timeout:
            metrics.timeouts.labels(timeout.kind).inc()
            self.log.info("connection_timeout", kind=timeout.kind, seconds=timeout.seconds)
        except RecordTooSlow as slow:  # it held a record buffer others may need
            metrics.timeouts.labels("record_rate").inc()
            self.log.info(
                "connection_timeout",
                kind="record_rate",
                seconds=slow.seconds,
                received=slow.received,
                size=slow.size,
            )
        except asyncio.IncompleteReadError as exc:
            if exc.partial or exc.expected != REQUEST_HEADER.size:  # cut inside a frame
                self.log.info("connection_lost", error=str(exc))
            # else: the client closed between two requests, as every session ends
        except (ConnectionError, OSError) as exc:
            self.log.info("connection_lost", error=str(exc) or type(exc).__name__)
        except RegistryUnreachable as exc:  # a shared registry's database is away
            # Not a bug: the client is cut (it retries later); the pool reconnects.
            self.log.error("registry_unreachable", error=str(exc))
        finally:
            await self._on_lost()
            await self._close()
            if self._bound_client is not None:
                self.context.sessions[(self.version, self._bound_client)] -= 1
            metrics.connections_active.dec()
            self.log.info("connection_closed")

    async def _serve(self, pending: list[E] | None = None) -> None:
        """The loop, both versions: bytes in with the time, effects out, deadlines from
        the core (``ReadDeadlines``: ``_deadline`` hands one out, ``on_deadline`` says
        whether a wait that ended without bytes passed it)."""
        buffers = self._take_over()
        taken = False
        while True:
            effects, pending = pending or self._take(time.time()), None
            if effects is not None:
                await self._apply(effects)
                taken = True
                if not self._closing:
                    continue
            if taken:  # answers out before waiting for more (and before closing)
                await self.writer.drain()
                taken = False
            if self._closing:
                await self._before_close()
                return
            deadline = self._deadline(time.monotonic())
            seconds = deadline.seconds
            while not await buffers.fill(seconds):
                passed = self.deadlines.on_deadline(time.monotonic())
                if passed is not None:
                    raise ReadTimeout(passed.kind, passed.seconds)
                seconds = deadline.at - time.monotonic()  # woken early: wait for the rest

    async def _apply(self, effects: list[E]) -> None:
        """Carry the effects out in order. They are taken off the list as they go: a
        written chunk's plaintext (1 MiB) is freed before the next effect is awaited."""
        effects.reverse()
        while effects:
            effect = effects.pop()
            try:
                await self._apply_one(effect)
            except StorageError as exc:  # logged once, by the session's notice
                # The rest of the list assumed the storage step worked: replace it.
                await self._apply(await self._storage_failed(exc))
                return
            except errors.ProtocolError as exc:  # a limit of this server, not the protocol
                self._refuse(exc)
                return

    # --- per version ------------------------------------------------------------------

    def _take_over(self) -> ReceiveBuffers:
        """Receive into this version's buffers from now on."""
        raise NotImplementedError

    def _take(self, now: float) -> list[E] | None:
        """The session's effects for the next input already received; None if it needs
        more bytes."""
        raise NotImplementedError

    def _deadline(self, now: float) -> Deadline:
        """When the bytes the session needs next must have come (from ``deadlines``)."""
        raise NotImplementedError

    async def _apply_one(self, effect: E) -> None:
        raise NotImplementedError

    async def _storage_failed(self, error: StorageError) -> list[E]:
        """Clean up after a failed storage step; the session's effects for it."""
        raise NotImplementedError

    def _refuse(self, error: errors.ProtocolError) -> None:
        """A limit of this server was hit (too many sessions for a client)."""
        raise NotImplementedError

    async def _before_close(self) -> None:
        """The session chose to close: anything to do before the connection is closed."""

    def _on_framing_error(self, error: errors.ProtocolError) -> None:
        self.log.warning("request_rejected", reason=error.reason, detail=str(error))

    async def _on_lost(self) -> None:
        pass

    # --- shared by both versions' effects ---------------------------------------------

    async def _durable(self) -> None:
        """Wait until registry changes are on disk: a response may report them."""
        # A flush the front end started before it handed the connection over is this one.
        pending, self.flushing = self.flushing, None
        if pending is None:
            pending = self.context.registry.flush()
        if pending is not None:
            try:
                await asyncio.wrap_future(pending)
            except NameTaken as exc:  # another replica registered it first: nothing was told
                self.context.registry.revert(pending)
                raise RegistrationLost(str(exc)) from exc
            except (sqlite3.Error, RegistryError) as exc:
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
        first = self._bound_client is None
        self._bound_client = client_id
        if first and self.on_authenticated is not None:
            self.on_authenticated()
        sessions[(self.version, client_id)] += 1
        limit = self.context.config.max_sessions_per_client
        if sessions[(self.version, client_id)] > limit:
            raise errors.TooManySessions(f"client already has {limit} connections open")

    def _notice(self, notice: Notice, client_id: bytes | None) -> None:
        """Count and log something a session noticed, whatever its version."""
        if isinstance(notice, IDENTIFYING):
            assert client_id is not None
            self._bind(client_id)  # first: a refused session is not counted
        metrics = self.context.metrics
        metrics.notice(notice)
        if isinstance(notice, ClientRegistered):
            metrics.registered_clients.set(self.context.registry.client_count())
        if isinstance(notice, StorageFailure):
            self.log.error(notice.event, **notice.fields)  # an operator must see it
        elif notice.quiet:
            self.log.debug(notice.event, **notice.fields)
        else:
            self.log.info(notice.event, **notice.fields)

    def _send(self, frame: bytes, code: int) -> None:
        self.writer.write(frame)
        self.context.metrics.response(code, self.version).inc()

    async def _close(self) -> None:
        if self.writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):  # the peer is gone already
            await self.writer.drain()
            self.writer.close()
            await self.writer.wait_closed()
