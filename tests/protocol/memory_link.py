"""Client and server sessions wired together in memory, with faults on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession, Identity
from eft_protocol.parser import NEED_DATA, RequestParser, ResponseParser
from eft_protocol.registry import MemoryRegistry
from eft_protocol.wire import Response

Corrupter = Callable[[bytes], bytes]


@dataclass
class StoredFiles:
    """What a driver would keep on disk: temporary uploads and committed files."""

    temporary: bytearray | None = None
    committed: dict[tuple[bytes, str], bytes] = field(default_factory=dict)
    rejections: list[ss.Rejected] = field(default_factory=list)
    notices: list[ss.Notice] = field(default_factory=list)


class MemoryLink:
    def __init__(
        self,
        registry: MemoryRegistry | None = None,
        *,
        answer_crc_retry: bool = False,
        corrupt: Corrupter | None = None,
    ) -> None:
        self.registry = registry or MemoryRegistry()
        self.server = ss.ServerSession(self.registry, answer_crc_retry=answer_crc_retry)
        self.parser = RequestParser()
        self.responses = ResponseParser()
        self.store = StoredFiles()
        self.corrupt = corrupt
        self.now = 0.0

    def to_server(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.parser.receive_data(self.corrupt(frame) if self.corrupt else frame)
            while (event := self.parser.next_event()) is not NEED_DATA:
                self.now += 1
                for effect in self.server.handle(event, self.now):
                    self._apply(effect)

    def _apply(self, effect: ss.Effect) -> None:
        if isinstance(effect, ss.Send):
            self.responses.receive_data(effect.response.encode())
        elif isinstance(effect, ss.Rejected):
            self.store.rejections.append(effect)
            self.responses.receive_data(effect.response.encode())
        elif isinstance(effect, ss.BeginFile):
            self.store.temporary = bytearray()
        elif isinstance(effect, ss.WriteFile):
            assert self.store.temporary is not None
            self.store.temporary += effect.data
        elif isinstance(effect, ss.DiscardFile):
            self.store.temporary = None
        elif isinstance(effect, ss.CommitFile):
            assert self.store.temporary is not None
            key = (effect.client_id, effect.storage_name)
            self.store.committed[key] = bytes(self.store.temporary)
            self.store.temporary = None
        elif isinstance(effect, ss.Notice):
            self.store.notices.append(effect)

    def next_response(self) -> Response:
        response = self.responses.next_event()
        assert response is not NEED_DATA, "the server has not answered"
        return response

    def pending_responses(self) -> bool:
        return self.responses.in_frame


def connect(link: MemoryLink, name: str, identity: Identity | None = None) -> ClientSession:
    """Run register or reconnect until the client holds an AES key."""
    client = ClientSession(name, identity)
    link.to_server(client.start())
    while not client.ready:
        reply = client.receive(link.next_response())
        link.to_server(reply.send)
    return client


def send_file(
    link: MemoryLink, client: ClientSession, name: str, data: bytes, packet_size: int = 64
) -> list[str]:
    """Send a file the way the driver does; returns what happened at each reply."""
    history = []
    while True:
        sender = client.begin_file(name, len(data), packet_size)
        frames = []
        for start in range(0, len(data), 1000):
            frames += sender.feed(data[start : start + 1000])
        link.to_server(frames + sender.finish())
        while True:
            reply = client.receive(link.next_response())
            history.append(_describe(reply))
            link.to_server(reply.send)
            if reply.resend_file:
                break
            if reply.file_verified:
                return history


def _describe(reply: object) -> str:
    flags = [k for k, v in vars(reply).items() if v is True]
    return "+".join(flags) or "continue"
