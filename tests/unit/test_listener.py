"""``--listen-fd``: an inherited socket is served only if it is a listening TCP socket."""

from __future__ import annotations

import os
import socket

import pytest

from eft_server.listener import NotAListener, inherited_listener


def test_a_listening_socket_is_served_on_its_own_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        served = inherited_listener(os.dup(held.fileno()))
        try:
            assert served.getsockname() == held.getsockname()
            assert not served.getblocking()
        finally:
            served.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (socket.socket, "not listening"),  # bound below, never listening
        (lambda: socket.socket(type=socket.SOCK_DGRAM), "not a TCP socket"),
        (lambda: socket.socket(socket.AF_UNIX), "not a TCP socket"),
    ],
    ids=["not-listening", "udp", "unix"],
)
def test_anything_else_is_refused_with_what_it_is(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with make() as sock:
        if sock.family == socket.AF_INET:
            sock.bind(("127.0.0.1", 0))
        with pytest.raises(NotAListener, match=message):
            inherited_listener(sock.fileno())
        sock.getsockname()  # still open: a refused descriptor is not closed under its owner


def test_a_descriptor_that_is_not_open_is_refused() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(NotAListener, match="not an open socket"):
        inherited_listener(read_end)
