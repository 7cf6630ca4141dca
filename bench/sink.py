"""The ceiling: a file pushed through plain TCP by Python, with no protocol and no crypto.

``python -m bench.sink listen`` accepts one connection, reads it into a reused buffer
until EOF and closes; ``python -m bench.sink send PORT FILE`` sends a file and returns
once the sink has closed, so its wall time covers delivery.
"""

from __future__ import annotations

import socket
import sys

CHUNK = 1 << 20


def listen() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        buffer = bytearray(CHUNK)
        total = 0
        with conn:
            while count := conn.recv_into(buffer):
                total += count
        print(total, flush=True)


def send(port: int, path: str) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with socket.create_connection(("127.0.0.1", port)) as conn, open(path, "rb", 0) as handle:
        while count := handle.readinto(buffer):
            conn.sendall(view[:count])
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # returns b"" once the sink has read everything and closed


if __name__ == "__main__":
    if sys.argv[1] == "listen":
        listen()
    else:
        send(int(sys.argv[2]), sys.argv[3])
