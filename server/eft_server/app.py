"""The listening server: accepts connections, runs each, shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import signal
import time
from collections.abc import Coroutine
from typing import Any

import structlog

from eft_protocol import engines
from eft_protocol.v4 import server as v4
from eft_protocol.v4.admission import UNDER_LOAD_HOLD, HelloGate
from eft_protocol.v4.handshake import fingerprint

from . import registration_policy as policy
from . import server_key
from .config import ServerConfig, registration_rules
from .control import Administration, ControlSocket
from .data_lock import DataDirLock
from .driver import ServerContext
from .frame_reader import RecordBuffers
from .front import Front
from .listener import inherited_listener
from .metrics import ServerMetrics
from .registry import is_shared, open_registry, reconcile, reconcile_v4
from .slots import ShedTally, Slot, Slots
from .startup import CannotListen, MetricsUnavailable
from .storage import StorageError, secure_data_dir
from .store_choice import choose_stores
from .tokens import TOKENS_FILE, TokenStore


class Server:
    def __init__(self, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.config = config
        engines.configure(os.environ.get("EFT_AES_BACKEND", "auto"))  # the core reads no env
        self.metrics = metrics or ServerMetrics(data_dir=config.data_dir)
        secure_data_dir(config.data_dir)  # 0700 before anything is written in it
        self.lock = DataDirLock(config.data_dir)  # first file: nothing is touched before it
        self.stores = choose_stores(config, os.environ, on_drop=self.metrics.partial_upload_dropped)
        self.store = self.stores.files
        self.engine = open_registry(
            config.data_dir,
            ephemeral=config.ephemeral,
            cache_entries=config.registry_cache,
            url=config.registry,
        )
        # The sessions see the registry through the operator's policy (docs/OPERATIONS.md).
        self.registry = policy.GatedRegistry(
            self.engine,
            policy.RegistrationPolicy(
                registration_rules(config),
                TokenStore(None if config.ephemeral else config.data_dir / TOKENS_FILE),
            ),
            policy.Revocations(None if config.ephemeral else config.data_dir / policy.REVOKED_FILE),
            on_refused=lambda reason: self.metrics.registrations_refused.labels(reason).inc(),
        )
        keys = server_key.load_keys(config.data_dir)
        self.static_key = keys.current
        self.fingerprint = fingerprint(self.static_key.public)
        self.next_fingerprint = None if keys.next is None else fingerprint(keys.next.public)
        self.control = ControlSocket(
            Administration(
                self.registry, config.data_dir, self.fingerprint, on_keys_changed=self._use_keys
            ),
            on_action=lambda action: self.metrics.admin_actions.labels(action).inc(),
        )
        self.context = ServerContext(
            config,
            self.registry,
            self.store,
            self.metrics,
            partials=self.stores.unfinished,
            static_key=self.static_key,
            next_static_key=keys.next,
            open_registration=config.registration == "open",
            record_buffers=RecordBuffers(
                config.record_buffers,
                v4.MAX_RECORD_PAYLOAD,
                per_owner=config.record_buffers_per_client,
                min_rate=config.record_min_rate,
            ),
            hello_gate=HelloGate(
                cookies_above=config.cookies_above if config.cookies_above >= 0 else None,
                rate_per_address=config.handshake_rate_per_address,
                load_hold=UNDER_LOAD_HOLD,
            ),
        )
        self._server: asyncio.Server | None = None
        self._proxy_server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        #: Connections their front end serves (``front``): no task yet.
        self.fronts: set[Front] = set()
        self.slots = Slots(config.max_connections)
        self._sheds = ShedTally()
        self._shed_counter = self.metrics.connections_shed.labels("unauthenticated")
        self._sheds_timer: asyncio.TimerHandle | None = None
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.log: Any = structlog.get_logger("eft.server")
        self.port: int | None = None

    async def start(self) -> None:
        partials = self.context.partials
        assert partials is not None
        await self.stores.open()  # a store that cannot be used stops us here (exit 9)
        removed = await self.store.remove_temporary_files()
        partial_leftovers = await partials.remove_leftovers()
        # The engine itself: a revoked client's files are still the registry's. A shared
        # registry's files may be on another replica's disk: this one is not its truth.
        # Files in S3 are not reconciled: they appear only by a commit that saves their
        # record.
        added = forgotten = corrected = added_v4 = forgotten_v4 = corrected_v4 = 0
        if not is_shared(self.engine):
            if self.store.local_files_dir is not None:
                added, forgotten, corrected = reconcile(self.engine, self.store.local_files_dir)
            if partials.local_files_dir is not None:
                added_v4, forgotten_v4, corrected_v4 = reconcile_v4(
                    self.engine, partials.local_files_dir
                )
        else:
            self.log.info(  # this replica's share of the migrations: one applies them
                "registry_migrated",
                migrations_applied=getattr(self.engine, "migrations_applied", 0),
                schema_version=getattr(self.engine, "schema_version", None),
            )
        pending = self.registry.flush()
        if pending is not None:
            await asyncio.wrap_future(pending)
        if (
            removed
            or partial_leftovers
            or added
            or forgotten
            or corrected
            or added_v4
            or (forgotten_v4 or corrected_v4)
        ):
            self.log.info(
                "recovered",
                orphaned_temporary_files=removed,
                file_records_added=added,
                file_records_removed=forgotten,
                file_records_corrected=corrected,
                v4_partial_leftovers=partial_leftovers,
                v4_file_records_added=added_v4,
                v4_file_records_removed=forgotten_v4,
                v4_file_records_corrected=corrected_v4,
            )
        # Both versions' clients, as the drivers count them after each registration.
        self.metrics.registered_clients.set(self.registry.client_count())
        self.metrics.watch_partial_uploads(partials.usage)
        # The default backlog of 100 drops bursts of new clients before we see them.
        backlog = min(4096, self.config.max_connections)
        loop = asyncio.get_running_loop()
        try:
            # Each connection starts on a protocol of ours, not start_server's streams
            # and task (``front``, issue 18).
            if self.config.listen_fd is not None:
                sock = inherited_listener(self.config.listen_fd)
                self._server = await loop.create_server(
                    functools.partial(Front, self), sock=sock, backlog=backlog
                )
            else:
                self._server = await loop.create_server(
                    functools.partial(Front, self),
                    self.config.host,
                    self.config.port,
                    reuse_address=True,
                    backlog=backlog,
                )
        except OSError as exc:
            if self.config.listen_fd is not None:
                raise CannotListen.inherited(self.config.listen_fd, exc) from exc
            raise CannotListen.on(self.config.host, self.config.port, exc) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        proxy_port = await self._listen_for_proxy(backlog)
        metrics_port = None
        if self.config.metrics_port is not None:
            try:
                metrics_port = self.metrics.serve(
                    self.config.metrics_host, self.config.metrics_port
                )
            except OSError as exc:
                self._server.close()
                raise MetricsUnavailable.on(
                    self.config.metrics_host, self.config.metrics_port, exc
                ) from exc
        await self.control.start()  # before "listening": eft-admin may come at once
        self._sweeper = asyncio.create_task(self._sweep_orphans())
        # Before "listening": whoever reads that line may signal us at once (a SIGINT
        # that came first used to raise KeyboardInterrupt and exit 1).
        self._handle_stop_signals()
        self.log.info(
            "listening",
            host=self._server.sockets[0].getsockname()[0],
            port=self.port,
            proxy_port=proxy_port,
            metrics_port=metrics_port,
            data_dir=str(self.config.data_dir),
            registry=self._registry_kind(),
            store=self.stores.description,
            clients=self.registry.client_count(),
            answer_901=self.config.answer_crc_retry,
            fingerprint=self.fingerprint,
            next_fingerprint=self.next_fingerprint,
            legacy=self.config.legacy,
            control_socket=str(self.control.path),
            **registration_rules(self.config).describe(),
        )
        if self.config.legacy == "allow":
            self.log.warning(
                "legacy_enabled",
                message="version-3 clients are accepted: see docs/SECURITY.md for its weaknesses",
            )

    async def _listen_for_proxy(self, backlog: int) -> int | None:
        """``--proxy-port``: connections from HAProxy, each with a PROXY v2 header."""
        if self.config.proxy_port is None:
            return None
        try:
            self._proxy_server = await asyncio.get_running_loop().create_server(
                functools.partial(Front, self, proxied=True),
                self.config.host,
                self.config.proxy_port,
                reuse_address=True,
                backlog=backlog,
            )
        except OSError as exc:
            assert self._server is not None
            self._server.close()
            raise CannotListen.on(self.config.host, self.config.proxy_port, exc) from exc
        port: int = self._proxy_server.sockets[0].getsockname()[1]
        return port

    async def _drain(self) -> None:
        """Give the connections in flight the grace period (a front end's may be handed
        over to a task meanwhile), then end them: tasks cancelled, handshakes closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace
        while self.tasks or self.fronts:
            left = deadline - loop.time()
            if left <= 0:
                break
            waiting = {*self.tasks, *(front.ended() for front in self.fronts)}
            await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for front in list(self.fronts):
            front.end()
        pending = list(self.tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def stop(self) -> None:
        self._stopping.set()

    def _use_keys(self, keys: server_key.ServerKeys) -> None:
        """``eft-admin rotate-key`` through the control socket: connections accepted
        from now on use these keys; those in flight finish with the ones they had."""
        self.static_key = self.context.static_key = keys.current
        self.context.next_static_key = keys.next
        self.fingerprint = fingerprint(keys.current.public)
        self.next_fingerprint = None if keys.next is None else fingerprint(keys.next.public)
        self.log.info(
            "server_key_changed",
            fingerprint=self.fingerprint,
            next_fingerprint=self.next_fingerprint,
        )

    def _registry_kind(self) -> str:
        if self.config.ephemeral:
            return "memory"
        return "postgresql" if self.config.registry else "sqlite"

    def _handle_stop_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)

    async def serve_until_stopped(self) -> None:
        await self._stopping.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting; give connections in flight the grace period, then cancel them."""
        assert self._server is not None
        self._server.close()
        if self._proxy_server is not None:
            self._proxy_server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._log_sheds()  # what the last second shed
        self.log.info("shutting_down", connections=len(self.tasks) + len(self.fronts))
        await self._drain()
        await self._server.wait_closed()
        if self._proxy_server is not None:
            await self._proxy_server.wait_closed()
        await self.control.close()
        await asyncio.to_thread(self.registry.close)
        await self.stores.close()
        self.lock.release()
        self.log.info("stopped")

    async def _sweep_orphans(self) -> None:
        """Leftovers: temporary files nobody touched for orphan_timeout (version 3) and
        partial uploads nobody resumed within resume_ttl (version 4)."""
        timeout, ttl = self.config.orphan_timeout, self.config.resume_ttl
        interval = self.config.sweep_interval or min(timeout / 2, ttl / 2, 300)
        partials = self.context.partials
        assert partials is not None
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.store.remove_temporary_files(timeout)
                expired = await partials.remove_expired(ttl)
            except StorageError as exc:  # S3 away for now: the next sweep tries again
                self.log.warning("sweep_failed", error=str(exc))
                continue
            if removed or expired:
                self.log.warning(
                    "leftovers_removed", temporary_files=removed, partial_uploads=expired
                )

    def admit(self, host: str | None, peer: object) -> bool:
        """Whether a newcomer from ``host`` gets a place (the front end's question, at
        the accept or after its PROXY header); a refusal is counted and logged here."""
        limit = self.config.max_handshakes_per_address
        if limit is not None and self.slots.unauthenticated_from(host) >= limit:
            # Its address already has that many connections in handshake: a flood from
            # one address waits on itself, the others' newcomers are not refused.
            self.metrics.address_refusals.labels("handshakes_in_flight").inc()
            self.log.debug("connection_refused", peer=str(peer), reason="address_handshakes")
            return False
        if not self._admit():
            self.metrics.connections_refused.inc()
            self.log.warning(
                "connection_refused",
                peer=str(peer),
                reason="stopping" if self._stopping.is_set() else "max_connections",
            )
            return False
        return True

    def serve(
        self, slot: Slot, work: Coroutine[Any, Any, None], context: contextvars.Context
    ) -> None:
        """A connection handed over by its front end: ``work`` (its driver) as a task in
        the connection's ``context``, holding ``slot`` until it ends."""
        task = asyncio.get_running_loop().create_task(self._served(slot, work), context=context)
        self.tasks.add(task)

    async def _served(self, slot: Slot, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            # A bug, not a bad peer: log it with its traceback and keep serving the rest.
            self.log.exception("connection_crashed")
        finally:
            self.slots.give_back(slot)
            task = asyncio.current_task()
            assert task is not None
            self.tasks.discard(task)

    def _admit(self) -> bool:
        """Whether a newcomer gets a place: at the cap, by shedding an unauthenticated
        connection (``slots``), unless ``--when-full refuse``."""
        if self._stopping.is_set():
            return False
        if not self.slots.full:
            return True
        if self.config.when_full != "shed":
            return False
        victim = self.slots.shed_candidate()
        if victim is None:  # every place is an authenticated session: they stay
            return False
        self.slots.give_back(victim)  # its place is the newcomer's from now on
        victim.shed()
        self._shed_counter.inc()
        # One line a second at most, not one per shed (``ShedTally``); the addresses
        # are the clients' (the PROXY header's through HAProxy).
        due_in = self._sheds.add(victim.host, time.monotonic())
        if due_in <= 0:
            self._log_sheds()
        elif self._sheds_timer is None:
            self._sheds_timer = asyncio.get_running_loop().call_later(due_in, self._log_sheds)
        return True

    def _log_sheds(self) -> None:
        if self._sheds_timer is not None:
            self._sheds_timer.cancel()
            self._sheds_timer = None
        if self._sheds.pending:
            fields = self._sheds.take(time.monotonic())
            self.log.warning("connection_shed", reason="unauthenticated", **fields)
