"""A blocking-socket client that can send what our real client never would.

It drives ``eft_protocol.client_session`` directly, so a test can pick any file name,
send hand-made frames at any moment, read raw responses and watch how the server
closes. ``new_key`` replaces RSA-1024 generation (~100 ms) for suites that make many.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from Crypto.PublicKey import RSA

from eft_protocol.client_session import ClientSession
from eft_protocol.parser import NEED_DATA, ResponseParser
from eft_protocol.wire import Response


class PeerClosed(ConnectionError):
    """The server closed the connection."""


class RawClient:
    def __init__(
        self,
        address: str,
        timeout: float = 30.0,
        *,
        new_key: Callable[[], RSA.RsaKey] | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.parser = ResponseParser()
        self.new_key = new_key
        self.session: ClientSession | None = None
        self._pending_key_request: list[bytes] = []

    @property
    def local(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.sock.sendall(frame)

    def receive(self) -> Response:
        while (response := self.parser.next_event()) is NEED_DATA:
            data = self.sock.recv(65536)
            if not data:
                raise PeerClosed("the server closed the connection")
            self.parser.receive_data(data)
        return response

    def closed_by_server(self) -> bool:
        """Wait for the server's next move: True if it closes, False if it sends bytes.
        Raises TimeoutError if it does neither within the timeout."""
        if self.parser.in_frame:
            return False
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        if data:
            self.parser.receive_data(data)
            return False
        return True

    # --- handshakes ------------------------------------------------------------------

    def register(self, name: str) -> ClientSession:
        """825 and its 1600 only: the client is registered and has no key yet."""
        session = ClientSession(name, new_key=self.new_key)
        self.send(*session.start())
        reply = session.receive(self.receive())
        self.session = session
        self._pending_key_request = reply.send
        return session

    def send_key(self) -> None:
        """The 826 that ``register`` prepared, and its 1602."""
        assert self.session is not None
        self.send(*self._pending_key_request)
        self.session.receive(self.receive())
        assert self.session.ready

    def handshake(self, name: str) -> ClientSession:
        self.register(name)
        self.send_key()
        assert self.session is not None
        return self.session

    @property
    def client_id(self) -> bytes:
        assert self.session is not None
        return self.session.client_id

    @property
    def aes_key(self) -> bytes:
        assert self.session is not None and self.session._aes_key is not None
        return self.session._aes_key

    def send_file(self, file_name: str, data: bytes) -> None:
        """One attempt, then the verdict exchange; raises on anything but success."""
        assert self.session is not None
        sender = self.session.begin_file(file_name, len(data), 4096)
        self.send(*sender.feed(data), *sender.finish())
        reply = self.session.receive(self.receive())
        self.send(*reply.send)
        reply = self.session.receive(self.receive())
        assert reply.file_verified, reply

    def close(self) -> None:
        self.sock.close()
