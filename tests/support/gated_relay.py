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


class GatedRelay:
    def __init__(self, target: str, hold_after: int) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.hold_after = hold_after
        self.held = threading.Event()
        self._released = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = [self._listener]
        self._first = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target)
                self._sockets += [client, server]
                gated, self._first = self._first, False
                limit = self.hold_after if gated else None
                for source, sink, gate in ((client, server, limit), (server, client, None)):
                    pump = threading.Thread(target=self._pump, args=(source, sink, gate))
                    pump.daemon = True
                    pump.start()

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
