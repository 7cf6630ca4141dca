"""The skeleton the tests' TCP relays share: a listener on 127.0.0.1 (a port the kernel
picks) that connects each client to ``target`` and runs two threads per connection,
one each way, doing what the subclass does to the bytes (``_directions``). ``close``
closes every socket, which ends the threads. Nothing here reaches past 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

#: One direction of a connection: the function its thread runs, and its arguments.
Direction = tuple[Callable[..., None], tuple[Any, ...]]


class ThreadedRelay:
    def __init__(self, target: str) -> None:
        """``target``: ``host:port`` or ``http://host:port``. Subclasses set their own
        fields first: the listener takes connections from here on."""
        host, _, port = target.removeprefix("http://").rpartition(":")
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def endpoint(self) -> str:
        """The address as an S3 endpoint URL."""
        return f"http://{self.address}"

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _directions(self, client: socket.socket, server: socket.socket) -> Sequence[Direction]:
        """The two threads of a new connection: client to server, server to client."""
        raise NotImplementedError

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target)
                self._sockets += [client, server]
                for run, args in self._directions(client, server):
                    threading.Thread(target=run, args=args, daemon=True).start()


def close_both(*sockets: socket.socket) -> None:
    """End a relayed connection both ways, as a dying peer or network would."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
