"""An inherited listening socket (``--listen-fd``), checked before it is served.

A supervisor that keeps the port across restarts (systemd's socket activation, or the
tests, which must never give a port back for another process to take) binds and listens
itself and hands the descriptor down; the server only accepts on it.
"""

from __future__ import annotations

import socket


class NotAListener(OSError):
    """The descriptor given with --listen-fd is not a listening TCP socket."""


def inherited_listener(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise NotAListener(f"--listen-fd {fd}: not an open socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.detach()
        raise NotAListener(f"--listen-fd {fd}: not a TCP socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise NotAListener(f"--listen-fd {fd}: the socket is not listening")
    sock.setblocking(False)
    return sock
