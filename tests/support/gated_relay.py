"""A TCP relay that stops a client's upload at a chosen byte until the test lets it go.

``eft-proxy --cut-after`` breaks a connection; this holds one instead: the first
connection's client-to-server bytes stop after ``hold_after`` bytes (``held`` is set
then) until ``release()``, so what a test does meanwhile happens at one known point of
the upload, whatever the machine's speed. Later connections (a client's retries) pass
freely. Threads, one pair per connection; everything on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.relay import Direction, ThreadedRelay


class GatedRelay(ThreadedRelay):
    def __init__(self, target: str, hold_after: int) -> None:
        self.hold_after = hold_after
        self.held = threading.Event()
        self._released = threading.Event()
        self._first = True
        super().__init__(target)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        super().close()

    def _directions(self, client: socket.socket, server: socket.socket) -> list[Direction]:
        gated, self._first = self._first, False
        limit = self.hold_after if gated else None
        return [(self._pump, (client, server, limit)), (self._pump, (server, client, None))]

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        passed = 0
        try:
            while True:
                if limit is not None and passed >= limit:
                    self.held.set()
                    self._released.wait()
                    limit = None
                data = source.recv(65536 if limit is None else min(65536, limit - passed))
                if not data:
                    break
                sink.sendall(data)
                passed += len(data)
        except OSError:  # one side is gone (killed): the other must see it, as over TCP
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
            return
        with contextlib.suppress(OSError):  # an orderly end: pass it on
            sink.shutdown(socket.SHUT_WR)
