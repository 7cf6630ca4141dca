"""A blocking-socket client that can send what our real client never would.

It drives ``eft_protocol.client_session`` directly, so a test can pick any file name,
send hand-made frames, and read raw responses.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from eft_protocol.client_session import ClientSession
from eft_protocol.parser import NEED_DATA, ResponseParser
from eft_protocol.wire import Response


@dataclass
class RawClient:
    host: str
    port: int
    timeout: float = 30.0
    sock: socket.socket = field(init=False)
    parser: ResponseParser = field(init=False, default_factory=ResponseParser)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)

    @classmethod
    def to(cls, address: str) -> RawClient:
        host, _, port = address.rpartition(":")
        return cls(host, int(port))

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.sock.sendall(frame)

    def receive(self) -> Response:
        while (response := self.parser.next_event()) is NEED_DATA:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.parser.receive_data(data)
        return response

    def closed_by_peer(self) -> bool:
        """True once the server has closed its side (after any pending responses)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True

    def connect_session(self, name: str) -> ClientSession:
        session = ClientSession(name)
        self.send(*session.start())
        while not session.ready:
            self.send(*session.receive(self.receive()).send)
        return session

    def send_file(self, session: ClientSession, file_name: str, data: bytes) -> None:
        """One attempt, then the verdict exchange; raises on anything but success."""
        sender = session.begin_file(file_name, len(data), 4096)
        self.send(*sender.feed(data), *sender.finish())
        reply = session.receive(self.receive())
        self.send(*reply.send)
        reply = session.receive(self.receive())
        assert reply.file_verified, reply

    def close(self) -> None:
        self.sock.close()
