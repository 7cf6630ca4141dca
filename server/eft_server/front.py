"""The listener's protocol: a connection's first bytes, and version 4's handshake,
served in the transport's callbacks, without a task (issue 18).

``asyncio.start_server`` gives every connection a StreamReader, a StreamWriter and a
task before it has said a word; with the first header's timed wait and the handshake's
awaits that was most of the server's CPU per handshake beyond the curve. Here a
``Front`` per connection reads the PROXY v2 header (``--proxy-port``) and the first
header in ``data_received``, takes the connection's place (``slots``), and:

- a version-4 connection has its handshake run synchronously: each whole frame goes
  into the sans-IO session, its answers straight to the transport, its notices into
  the ``ConnectionV4``'s counts and log; the deadline is a loop timer from the core's
  (``ReadDeadlines``). A session that ends there (the client closes after the welcome,
  a refusal, a timeout) is closed here, with the lines and counts of a served one.
- anything that needs awaiting is handed over to the stream-based driver, as a task
  from then on (``_hand_over``): a version-3 connection with its first header, and a
  version-4 one whose answer waits for a registry write, or whose client sends its
  first record after the welcome. The bytes received and not taken go first into the
  new StreamReader.

Each connection keeps one ``contextvars.Context`` from its accept on: its log context
(connection, peer, version, client_id), the PROXY header's source and the registration
policy's address are bound in it, every callback runs in it, and the task a
connection is handed to runs in it too, so every line carries what it did before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from eft_protocol import errors, versions
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.deadlines import Deadline
from eft_protocol.notices import Notice
from eft_protocol.v4 import server as v4

from . import proxy_header
from . import registration_policy as policy
from .connection import Connection
from .connection_v4 import ConnectionV4
from .registry_errors import RegistryUnreachable
from .slots import Slot

if TYPE_CHECKING:
    from .app import Server

_HEADER = REQUEST_HEADER.size
#: What the front end waits for: the PROXY header, the first header, the handshake's
#: frames; or nothing (closed, or handed over).
_PROXY, _FIRST, _V4, _DONE = range(4)


class TransportWriter:
    """What a connection writes through while the front end serves it: the transport
    itself (a connection handed over to a task gets a real StreamWriter)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        self.writelines = transport.writelines
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info


class Front(asyncio.Protocol):
    """One accepted connection until it is closed or handed over."""

    def __init__(self, server: Server, proxied: bool = False) -> None:
        self.server = server
        self.transport: Any = None
        self._stage = _PROXY if proxied else _FIRST
        self._buffer = bytearray()
        self._context = contextvars.copy_context()
        self._timer: asyncio.TimerHandle | None = None
        self._peer: object = None
        self._slot: Slot | None = None
        self._connection: ConnectionV4 | None = None
        self._in_frame = False  # a handshake frame's header is in, its payload to come
        self._ended: asyncio.Future[None] | None = None
        self._due: float | None = None  # when the armed timer is due (monotonic)
        self._handed = False  # to a task: the transport is the driver's now
        self._accepted_at = 0.0

    @property
    def serving(self) -> bool:
        """Still the connection's protocol: neither closed nor handed over."""
        return self._stage != _DONE

    def ended(self) -> asyncio.Future[None]:
        """Done once the front end is through with the connection (graceful shutdown)."""
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if not self.serving:
                self._ended.set_result(None)
        return self._ended

    def end(self) -> None:
        """Close at once (the server's shutdown, its grace period over)."""
        if self._stage == _V4:
            self._context.run(self._finish)
        elif self.serving:
            self._close()

    # --- called by the transport (each in the connection's context) -------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._context.run(self._guarded, self._made)

    def data_received(self, data: bytes) -> None:
        self._context.run(self._guarded, self._received, data)

    def eof_received(self) -> bool | None:
        self._context.run(self._guarded, self._ended_by_peer, None)
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.serving:
            self._context.run(self._guarded, self._ended_by_peer, exc)

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """One callback's work; what the driver's task did for an exception, here."""
        try:
            step(*args)
        except RegistryUnreachable as exc:  # a shared registry's database is away
            # Not a bug: the client is cut (it retries later); the pool reconnects.
            if self._connection is not None and self._stage == _V4:
                self._connection.log.error("registry_unreachable", error=str(exc))
                self._finish()
            elif self.serving:
                self._close()
        except Exception:
            # A bug, not a bad peer: log it with its traceback and keep serving the rest.
            if self._connection is not None and self._stage == _V4:
                with contextlib.suppress(Exception):
                    self._finish()
            if not self._handed:  # closed whatever the step left undone
                self._close()
            self.server.log.exception("connection_crashed")

    # --- the stages ----------------------------------------------------------------------

    def _made(self) -> None:
        self.server.fronts.add(self)
        self._accepted_at = time.monotonic()
        self._arm_handshake()
        if self._stage == _FIRST:
            self._admit(self.transport.get_extra_info("peername"))

    def _admit(self, peer: object) -> None:
        """A place for the connection (``Server.admit``), or it is closed."""
        self._peer = peer
        host = str(peer[0]) if isinstance(peer, tuple) else None
        if not self.server.admit(host, peer):
            self._close()
            return
        policy.connection_peer.set(host)  # this connection's: the per-address rate limit
        self._slot = Slot(host, self)
        self.server.slots.take(self._slot)

    def _received(self, data: bytes) -> None:
        if not self.serving:
            return
        self._buffer += data
        if self._stage == _PROXY:
            self._proxy_header()
        if self._stage == _FIRST:
            self._first_header()
        if self._stage == _V4:
            self._handshake()

    def _proxy_header(self) -> None:
        buffer = self._buffer
        fixed = proxy_header.FIXED_PART
        if len(buffer) < fixed:
            return
        try:
            size = fixed + proxy_header.header_length(bytes(buffer[:fixed]))
            if len(buffer) < size:
                return
            peer = proxy_header.parse(bytes(buffer[:size]))
        except proxy_header.BadProxyHeader as exc:
            self._proxy_refused(exc.reason, str(exc))
            return
        del buffer[:size]
        counted = self.server.metrics.proxy_headers
        if peer.local:
            # HAProxy's health check: answered by this event loop, so a replica whose
            # loop is stuck (or SIGSTOPped) fails it, while its kernel still accepts.
            counted.labels("health_check").inc()
            self.transport.write(proxy_header.HEALTH_REPLY)
            self._close()
            return
        counted.labels("proxied").inc()
        proxy_header.proxied_source.set(peer.source)  # this connection's context only
        self._stage = _FIRST
        self._accepted_at = time.monotonic()  # the handshake's time starts after it
        self._arm_handshake()
        self._admit(peer.source)

    def _proxy_refused(self, reason: str, detail: str | None, logged: bool = True) -> None:
        self.server.metrics.proxy_headers.labels(reason).inc()
        if logged:
            self.server.log.warning(
                "proxy_header_refused",
                reason=reason,
                detail=detail,
                proxy=str(self.transport.get_extra_info("peername")),
            )
        self._close()

    def _first_header(self) -> None:
        """The first header's version byte picks the protocol for the whole connection."""
        if len(self._buffer) < _HEADER:
            return
        first = bytes(self._buffer[:_HEADER])
        server = self.server
        chosen = versions.route(first, server.config.legacy)
        if chosen is versions.Route.VERSION_4:
            self._start_v4(first)
            return
        if chosen is versions.Route.VERSION_3:
            del self._buffer[:_HEADER]
            connection = Connection(
                server.context, *self._streams(), first, accepted_at=self._accepted_at
            )
            self._hand_over(connection, connection.run())
            return
        server.metrics.connections_refused.inc()
        version = first[versions.VERSION_OFFSET]
        server.log.warning("connection_refused", reason="legacy_denied", version=version)
        self._close()

    def _start_v4(self, first: bytes) -> None:
        # The first header stays in the buffer: the handshake takes whole frames.
        connection = ConnectionV4(
            self.server.context,
            cast(asyncio.StreamReader, None),  # the streams come with a hand-over
            cast(asyncio.StreamWriter, TransportWriter(self.transport)),
            first,
            self._accepted_at,
        )
        self._connection = connection
        self._place(connection)
        connection.opened()
        self._stage = _V4

    def _place(self, connection: Any) -> None:
        slot = self._slot
        assert slot is not None
        slot.connection = connection
        connection.on_authenticated = functools.partial(self.server.slots.authenticated, slot)

    # --- version 4's handshake -----------------------------------------------------------

    def _handshake(self) -> None:
        """Every whole frame received into the session, until the welcome; the first
        bytes after it hand the connection over."""
        connection = self._connection
        assert connection is not None
        session, buffer = connection.session, self._buffer
        taken = False
        while self._stage == _V4:
            if session.has_key:  # welcomed: records from here on are the driver's
                if buffer:
                    self._hand_over(connection, connection.served(), frames_taken=True)
                break
            if len(buffer) < _HEADER:
                break
            header = bytes(buffer[:_HEADER])
            try:
                size = session.payload_size(header)
            except errors.ProtocolError as exc:
                self._apply(session.abort(exc))
                return
            if len(buffer) < _HEADER + size:
                if not self._in_frame:  # the payload's time starts with its header
                    self._in_frame = True
                    self._arm_deadline(connection.deadlines.payload(time.monotonic()))
                return
            payload = bytes(buffer[_HEADER : _HEADER + size])
            del buffer[: _HEADER + size]
            self._in_frame, taken = False, True
            connection._count(header)
            self._apply(session.receive(header, payload, time.time()))
        if taken and self._stage == _V4:
            deadline = connection.deadlines.between_frames(
                time.monotonic(), has_key=session.has_key
            )
            self._arm_deadline(deadline)

    def _apply(self, effects: list[v4.Effect]) -> None:
        """The handshake's effects, as ``ConnectionV4._apply`` carries them out; the
        first one that must be awaited hands the connection over with the rest."""
        connection = self._connection
        assert connection is not None
        closing = False
        for index, effect in enumerate(effects):
            if type(effect) is v4.SendFrame:
                flushing = self.server.context.registry.flush()
                if flushing is not None:  # durable before it is answered: a task waits
                    connection.flushing = flushing
                    rest = effects[index:]
                    self._hand_over(connection, connection.served(rest), frames_taken=True)
                    return
                connection._send(effect.frame, effect.code)
            elif type(effect) is v4.Close:
                closing = True
            elif isinstance(effect, Notice):
                try:
                    connection._notice(effect, connection.session.client_id)
                except errors.ProtocolError as exc:  # a limit of this server
                    connection._refuse(exc)
                    closing = True
                    break
            else:
                rest = effects[index:]
                self._hand_over(connection, connection.served(rest), frames_taken=True)
                return
        if closing:
            self._finish()

    def _finish(self, event: str | None = None, **fields: Any) -> None:
        """The end of a version-4 connection the front end served: ``event`` first (its
        timeout or its loss), then the lines and counts ``ConnectionBase.served`` ends
        with."""
        connection = self._connection
        assert connection is not None
        self._stage = _DONE
        if event is not None:
            connection.log.info(event, **fields)
        for effect in connection.session.connection_lost():  # nothing open yet: notices
            if isinstance(effect, Notice):
                connection._notice(effect, connection.session.client_id)
        self.transport.close()
        if connection._bound_client is not None:
            connection.context.sessions[(connection.version, connection._bound_client)] -= 1
        connection.context.metrics.connections_active.dec()
        connection.log.info("connection_closed")
        self._detach()

    # --- timers, ends and the hand-over --------------------------------------------------

    def _arm_handshake(self) -> None:
        """The handshake's deadline, as the core computes it (``ReadDeadlines``)."""
        seconds = self.server.config.handshake_timeout
        self._arm(seconds, self._accepted_at + seconds)

    def _arm(self, seconds: float, due: float | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._timed_out, context=self._context)
        self._due = due

    def _arm_deadline(self, deadline: Deadline) -> None:
        # After message 1 it is still the handshake's, from the accept; after the welcome
        # it is later (idle), and most clients send a record or close long before: the
        # armed timer stays, and if it fires first ``_timed_out`` waits for the rest.
        # One loop timer less per log-in (issue 18).
        if self._due is not None and deadline.at >= self._due:
            return
        self._arm(max(0.0, deadline.at - time.monotonic()), deadline.at)

    def _timed_out(self) -> None:
        self._timer = self._due = None
        if self._stage == _PROXY:
            self._proxy_refused("timeout", None)
        elif self._stage == _FIRST:
            seconds = self.server.config.handshake_timeout
            self.server.metrics.timeouts.labels("handshake").inc()
            self.server.log.info(
                "connection_timeout", kind="handshake", seconds=seconds, peer=str(self._peer)
            )
            self._close()
        elif self._stage == _V4:
            connection = self._connection
            assert connection is not None
            passed = connection.deadlines.on_deadline(time.monotonic())
            if passed is None:  # woken early: wait for the rest
                current = connection.deadlines.deadline()
                assert current is not None
                self._arm_deadline(current)
                return
            connection.context.metrics.timeouts.labels(passed.kind).inc()
            seconds = round(passed.seconds, 3)
            self._finish("connection_timeout", kind=passed.kind, seconds=seconds)

    def _ended_by_peer(self, exc: Exception | None) -> None:
        """End of stream, or the connection's loss (``exc``; None: closed or shed)."""
        if self._stage == _PROXY:
            # Left mid-header: counted and logged; a reset only counted.
            self._proxy_refused("left", None, logged=exc is None)
        elif self._stage == _FIRST:
            # A port probe or a health check: it left before saying anything.
            self.server.log.debug("connection_left_early", peer=str(self._peer))
            self._close()
        elif self._stage == _V4:
            if exc is not None:
                self._finish("connection_lost", error=str(exc) or type(exc).__name__)
                return
            buffer = self._buffer
            if not buffer:  # between two frames, as every session ends
                self._finish()
                return
            # Cut inside a frame: what the driver's reads would have raised.
            if len(buffer) < _HEADER:
                cut = asyncio.IncompleteReadError(bytes(buffer), _HEADER)
            else:
                size = int.from_bytes(buffer[19:23], "little")
                cut = asyncio.IncompleteReadError(bytes(buffer[_HEADER:]), size)
            self._finish("connection_lost", error=str(cut))

    def _close(self) -> None:
        self._stage = _DONE
        self.transport.close()
        self._detach()

    def _detach(self, keep_place: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.fronts.discard(self)
        # The slot refers to this front (its writer) and to the connection, whose
        # ``on_authenticated`` holds the slot: cycles, cut here once the place is given
        # back, so that a served connection's objects are freed by their counts when
        # the transport lets go of this front, not by the cyclic collector (issue 18:
        # about 29 objects a connection, a young-generation collection every 30 or so
        # log-ins).
        slot, self._slot = self._slot, None
        if slot is not None and not keep_place:
            self.server.slots.give_back(slot)
            slot.connection = None
            if self._connection is not None:
                self._connection.on_authenticated = None
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A StreamReader and StreamWriter on the transport, as ``start_server`` makes
        them, the bytes received and not taken already in the reader."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self._buffer:
            reader.feed_data(bytes(self._buffer))
            self._buffer.clear()
        return reader, asyncio.StreamWriter(self.transport, protocol, reader, loop)

    def _hand_over(
        self,
        connection: ConnectionV4 | Connection,
        work: Coroutine[Any, Any, None],
        frames_taken: bool = False,
    ) -> None:
        """Serve ``connection`` in a task from now on (in this connection's context)."""
        if frames_taken:  # version 4: the front end took every whole frame so far
            assert isinstance(connection, ConnectionV4)
            connection.reader, connection.writer = self._streams()
            connection.first_header = None
        else:
            self._place(connection)
        self._stage, self._handed = _DONE, True
        slot = self._slot
        assert slot is not None
        self.server.serve(slot, work, self._context)
        self._detach(keep_place=True)
