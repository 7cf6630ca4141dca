"""The listening server: accepts connections, runs each, shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog

from .config import ServerConfig
from .connection import Connection, ServerContext
from .metrics import ServerMetrics
from .registry import open_registry, reconcile
from .storage import FileStore


class Server:
    def __init__(self, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ServerMetrics()
        self.store = FileStore(config.data_dir)
        self.registry = open_registry(config.data_dir, ephemeral=config.ephemeral)
        self.context = ServerContext(config, self.registry, self.store, self.metrics)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.log: Any = structlog.get_logger("eft.server")
        self.port: int | None = None

    async def start(self) -> None:
        removed = self.store.remove_temporary_files()
        added, forgotten = reconcile(self.registry, self.store.files_dir)
        if removed or added or forgotten:
            self.log.info(
                "recovered",
                orphaned_temporary_files=removed,
                file_records_added=added,
                file_records_removed=forgotten,
            )
        self.metrics.registered_clients.set(len(self.registry.clients()))
        self._server = await asyncio.start_server(
            self._on_connection, self.config.host, self.config.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        metrics_port = None
        if self.config.metrics_port is not None:
            metrics_port = self.metrics.serve(self.config.metrics_host, self.config.metrics_port)
        self._sweeper = asyncio.create_task(self._sweep_orphans())
        self.log.info(
            "listening",
            host=self.config.host,
            port=self.port,
            metrics_port=metrics_port,
            data_dir=str(self.config.data_dir),
            registry="memory" if self.config.ephemeral else "sqlite",
            clients=len(self.registry.clients()),
            answer_901=self.config.answer_crc_retry,
        )

    def stop(self) -> None:
        self._stopping.set()

    async def serve_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self._stopping.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting; give connections in flight the grace period, then cancel them."""
        assert self._server is not None
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.log.info("shutting_down", connections=len(self._tasks))
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._server.wait_closed()
        await asyncio.to_thread(self.registry.close)
        self.log.info("stopped")

    async def _sweep_orphans(self) -> None:
        """Uploads whose temporary file nobody touched for orphan_timeout are leftovers."""
        timeout = self.config.orphan_timeout
        while True:
            await asyncio.sleep(min(timeout / 2, 300))
            removed = await asyncio.to_thread(self.store.remove_temporary_files, timeout)
            if removed:
                self.log.warning("orphaned_temporary_files_removed", count=removed)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._stopping.is_set() or len(self._tasks) >= self.config.max_connections:
            self.metrics.connections_refused.inc()
            self.log.warning(
                "connection_refused",
                peer=str(writer.get_extra_info("peername")),
                reason="stopping" if self._stopping.is_set() else "max_connections",
            )
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await Connection(self.context, reader, writer).run()
        except Exception:
            # A bug, not a bad peer: log it with its traceback and keep serving the rest.
            self.log.exception("connection_crashed")
        finally:
            self._tasks.discard(task)
