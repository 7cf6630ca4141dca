"""The client's link when the server resets the connection under it, on both event loops.

``eft-client`` runs on uvloop. When the server dies (SIGKILL, a crash) the kernel resets
the connection; the client must see ``ConnectionLost`` (exit 3 after its reconnects),
never an internal error (exit 1) that skips the reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from eft_client.errors import ConnectionLost
from eft_client.link import Link
from eft_client.settings import ClientSettings


async def _send_after_a_reset() -> BaseException | None:
    """The server accepts, then resets the connection; the client sends a file's frame."""
    reset = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, as the kernel sends for a killed process
        reset.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        link = await Link.open(ClientSettings("127.0.0.1", port, "x", Path(".")))
        await reset.wait()
        with contextlib.suppress(ConnectionError, OSError):
            await link.writer.wait_closed()  # the client's side has seen the reset
        try:
            await link.send([b"x" * 1024])
        except BaseException as exc:
            return exc
        return None
    finally:
        server.close()


def _uvloop_run(coro: Coroutine[Any, Any, Any]) -> Any:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.run(coro)


LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": _uvloop_run,
}


@pytest.mark.parametrize("run", LOOPS.values(), ids=LOOPS.keys())
def test_a_send_after_the_server_reset_the_connection_is_a_lost_connection(
    run: Callable[[Coroutine[Any, Any, Any]], Any],
) -> None:
    error = run(_send_after_a_reset())
    assert isinstance(error, ConnectionLost), repr(error)
