"""Version-4 client and server sessions wired together in memory, with faults.

What ``tests/protocol/memory_link.py`` is to version 3: a server driver as small as
``eft_server.connection_v4`` (bytes in through ``ServerSessionV4.receive_data``,
effects carried out, partial uploads kept in a dict as ``partial_uploads.py`` keeps
them on disk), a client driver as small as ``eft_client.transfer_v4``, and faults
between them: a frame dropped, a byte flipped, the connection cut, the client silent
past a deadline on a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER
from eft_protocol.deadlines import Deadline, ReadDeadlines, TimeLimits
from eft_protocol.noise import KeyPair
from eft_protocol.notices import Notice
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import file_digest


class Fault(enum.Enum):
    DROP = "drop"  # the frame never arrives (the next one fails its tag)
    FLIP = "flip"  # one bit of the frame changes
    CUT = "cut"  # the connection breaks before the frame
    SILENCE = "silence"  # the client stops sending; the server's clock runs past its deadline


@dataclass
class Partial:
    name: str
    size: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    held: bool = False


@dataclass
class Disk:
    """What ``PartialStore`` keeps: partial uploads by (client, upload id), and files."""

    partials: dict[tuple[bytes, bytes], Partial] = field(default_factory=dict)
    files: dict[tuple[bytes, str], bytes] = field(default_factory=dict)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0


class ServerEnd:
    """One server connection in memory: bytes in, effects carried out, bytes out."""

    def __init__(self, static: KeyPair, registry: MemoryRegistry, disk: Disk, clock: Clock) -> None:
        self.session = v4s.ServerSessionV4(static, registry, max_file_size=1 << 30)
        self.disk, self.clock = disk, clock
        self.deadlines = ReadDeadlines(TimeLimits(idle=120, read=30, handshake=30), clock.now)
        self.out = bytearray()
        self.closed = False
        self.lost = False
        self.notices: list[Notice] = []
        self._key: tuple[bytes, bytes] | None = None

    def receive_data(self, data: bytes) -> None:
        self._apply(self.session.receive_data(data, self.clock.now))
        if self.closed:
            self.lose()

    def deadline(self) -> Deadline:
        """When the server gives up waiting, as ``connection_v4`` asks after each frame."""
        if self.session.buffered >= REQUEST_HEADER.size:  # a header in: its payload is due
            return self.deadlines.payload(self.clock.now)
        uploading = self.session.state is v4s.ServerStateV4.UPLOADING
        return self.deadlines.between_frames(
            self.clock.now, has_key=self.session.has_key, mid_upload=uploading
        )

    def on_deadline(self) -> Deadline | None:
        passed = self.deadlines.on_deadline(self.clock.now)
        if passed is not None:
            self.lose()
        return passed

    def lose(self) -> None:
        """The connection is gone (cut, closed, timed out), as ``_on_lost`` sees it."""
        if self.lost:
            return
        self.lost = self.closed = True
        self._apply(self.session.connection_lost())
        if self._key is not None:  # closed by us mid-upload: keep it resumable
            self.disk.partials[self._key].held = False
            self._key = None

    def _apply(self, effects: list[v4s.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, v4s.SendFrame):
                self.out += effect.frame
            elif isinstance(effect, v4s.Close):
                self.closed = True
            elif isinstance(effect, v4s.OpenUpload):
                self._open(effect)
            elif isinstance(effect, v4s.WriteChunk):
                assert self._key is not None
                self.disk.partials[self._key].chunks[effect.index] = bytes(effect.data)
            elif isinstance(effect, v4s.FinishUpload):
                assert self._key is not None
                partial = self.disk.partials[self._key]
                digest = file_digest(b"".join(partial.chunks[i] for i in sorted(partial.chunks)))
                self._apply(self.session.upload_complete(digest.digest(), self.clock.now))
                self._apply(self.session.receive_data(b"", self.clock.now))
            elif isinstance(effect, v4s.CommitUpload):
                assert self._key is not None
                partial = self.disk.partials.pop(self._key)
                data = b"".join(partial.chunks[i] for i in sorted(partial.chunks))
                assert file_digest(data).digest() == effect.digest
                self.disk.files[(effect.client_id, effect.name)] = data
                self._key = None
            elif isinstance(effect, v4s.DiscardUpload):
                if self._key is not None:
                    self.disk.partials.pop(self._key, None)
                    self._key = None
            elif isinstance(effect, v4s.SuspendUpload):
                if self._key is not None:
                    self.disk.partials[self._key].held = False
                    self._key = None
            elif isinstance(effect, Notice):
                self.notices.append(effect)

    def _open(self, effect: v4s.OpenUpload) -> None:
        key = (effect.client_id, effect.upload_id)
        partial = self.disk.partials.get(key)
        if partial is not None and partial.held:
            self._apply(self.session.storage_failed("busy", busy=True))
            return
        if partial is None or (partial.name, partial.size) != (effect.name, effect.size):
            partial = self.disk.partials[key] = Partial(effect.name, effect.size)
        partial.held = True
        self._key = key
        durable = 0
        while durable + 1 in partial.chunks:
            durable += 1
        durable = min(durable, rec.chunk_count(effect.size) - 1)
        for index in [i for i in partial.chunks if i > durable]:
            del partial.chunks[index]
        self._apply(self.session.upload_ready(durable))
        self._apply(self.session.receive_data(b"", self.clock.now))


#: What happens to the n-th frame on its way to the server: these bytes arrive, or a
#: fault that ends the connection (``Fault.CUT``, ``Fault.SILENCE``).
FaultHook = Callable[[int, bytes], bytes | Fault]


class LinkClosed(Exception):
    """The client met a closed connection (no answer where one was due)."""


class ClientEnd:
    """The client's driver, as ``transfer_v4`` does it, on one server connection."""

    def __init__(self, server: ServerEnd, session: v4c.ClientSessionV4, hook: FaultHook) -> None:
        self.server, self.session, self.hook = server, session, hook
        self.frames_sent = 0
        self._inbox = bytearray()

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.frames_sent += 1
            if self.server.closed:
                raise LinkClosed("closed")
            arriving = self.hook(self.frames_sent, frame)
            if arriving is Fault.CUT:
                self.server.lose()
                raise LinkClosed("cut")
            if arriving is Fault.SILENCE:  # half the frame, then nothing
                self.server.receive_data(frame[: len(frame) // 2])
                self._wait_out()
            assert isinstance(arriving, bytes)
            self.server.receive_data(arriving)

    def receive(self) -> v4c.ReplyV4:
        self._inbox += self.server.out
        self.server.out.clear()
        if len(self._inbox) < RESPONSE_HEADER.size:
            if self.server.closed:
                raise LinkClosed("closed")
            self._wait_out()  # both ends wait: the server's deadline comes first
        header = bytes(self._inbox[: RESPONSE_HEADER.size])
        size = self.session.payload_size(header)
        payload = bytes(self._inbox[RESPONSE_HEADER.size : RESPONSE_HEADER.size + size])
        del self._inbox[: RESPONSE_HEADER.size + size]
        return self.session.receive(header, payload)

    def _wait_out(self) -> None:
        """Nothing moves: the server's fake clock runs to its deadline, which closes."""
        if self.server.closed:
            raise LinkClosed("closed")
        deadline = self.server.deadline()
        self.server.clock.now = deadline.at
        assert self.server.on_deadline() == deadline
        raise LinkClosed(f"{deadline.kind} timeout")


def upload(
    client: ClientEnd, name: str, data: bytes, upload_id: bytes, *, register: bool
) -> v4c.ReplyV4:
    """Handshake, then one file until it is verified (or raises); the last reply."""
    session = client.session
    client.send(session.start())
    reply = client.receive()
    client.send(*reply.send)
    reply = client.receive()
    assert (reply.registered if register else reply.logged_in) == session.client_id
    while True:
        client.send(session.begin_file(name, len(data), upload_id))
        reply = client.receive()
        assert reply.start_chunk is not None
        total = rec.chunk_count(len(data))
        for index in range(reply.start_chunk, total + 1):
            client.send(
                session.chunk_record(index, data[(index - 1) * rec.CHUNK : index * rec.CHUNK])
            )
        session.file_hashed(file_digest(data).digest())
        reply = client.receive()
        client.send(*reply.send)
        reply = client.receive()
        if reply.file_verified:
            return reply
