"""Version 4 for the attacks: the attacker's own v4 connections, and v4 recordings.

Every attack takes ``--protocol 4`` to make its version-4 attempt. Against version 4 an
attacker has what any peer has: it can run the Noise XX handshake with a static key of
its own (``V4Client``: register any free name, log in as itself, seal records under its
own session keys), and it can cut and rewrite whole frames as a man in the middle. It
does not have a victim's static key, the server's, or any session key.

``v4_views`` reads a recording (``recording.load_sessions``) the way a version-4
eavesdropper can: the three handshake messages, then records whose headers are in the
clear (code, client id, size) and whose bodies are sealed, grouped into uploads by the
order of the exchange (metadata, 1604, data, 1603, verdict, 1604).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol.codes import REQUEST_HEADER, RequestCode, ResponseCode
from eft_protocol.noise import HandshakeState, KeyPair, NoiseError
from eft_protocol.v4 import records as rec
from eft_protocol.v4.handshake import (
    HandshakeError,
    Intent,
    Offer,
    ServerHello,
    client_id_for,
    cookie_reply_header,
    fingerprint,
    hello_header,
    intent_header,
    prologue,
    server_hello_header,
)

from .common import DEFAULT_TIMEOUT, AttackError, ConnectionClosed, ServerLink
from .framing import Frame
from .recording import SessionView

VERSION = 4
CLOSED = -1  # "the server closed the connection without an answer", in answer lists
NO_ANSWER = 0  # "the connection stayed open and nothing came"
#: 903 COMMIT_IF (feature STREAM) is a streamed file's verdict: "store it if the digest
#: is this one" (docs/PROTOCOL-v4.md section 8.1).
VERDICTS = (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP, rec.COMMIT_IF)
PREFIX = 9  # file_id, chunk_index, flags in front of every 828 plaintext


def add_protocol_argument(parser: object) -> None:
    parser.add_argument(  # type: ignore[attr-defined]
        "--protocol",
        type=int,
        choices=(3, 4),
        default=3,
        help="the protocol version to attack (3); 4 makes the version-4 attempt",
    )


# --- the attacker's own version-4 connections -----------------------------------------


class V4Client:
    """One version-4 connection driven by the attacker, with a static key of its own."""

    def __init__(self, link: ServerLink, key: KeyPair | None = None) -> None:
        self.link = link
        self.key = key or KeyPair.generate()
        self.client_id = client_id_for(self.key.public)
        self.noise: HandshakeState | None = None
        self.send_cipher: rec.RecordCipher | None = None
        self.recv_cipher: rec.RecordCipher | None = None
        self.server_fingerprint: str | None = None
        self.server_hello: ServerHello | None = None
        self.welcome: int | None = None  # 1600, 1601, 1605, 1606, 1607 or CLOSED
        self._file_id = 0

    @classmethod
    async def open(cls, target: str, key: KeyPair | None = None) -> V4Client:
        return cls(await ServerLink.open(target), key)

    async def hello(self) -> None:
        """Messages 1 and 2: the server proves its static key (we accept any)."""
        header = hello_header()
        self.noise = HandshakeState(initiator=True, static=self.key, prologue=prologue(header))
        await self.link.send(header + self.noise.write_message(Offer().encode()))
        frame = await self.link.receive()
        if frame.raw[:7] == cookie_reply_header():  # under load: again, with its cookie
            offer = dataclasses.replace(Offer(), cookie=bytes(frame.payload)).encode()
            header = hello_header(32 + len(offer))
            self.noise = HandshakeState(
                initiator=True, static=self.key, prologue=prologue(header), ephemeral=self.noise.e
            )
            await self.link.send(header + self.noise.write_message(offer))
            frame = await self.link.receive()
        if frame.raw[:7] != server_hello_header():
            raise AttackError(f"the server did not answer in version 4 ({frame.code})")
        try:
            self.server_hello = ServerHello.decode(self.noise.read_message(frame.payload))
        except (NoiseError, HandshakeError) as exc:
            raise AttackError(f"the server hello did not authenticate: {exc}") from None
        assert self.noise.rs is not None
        self.server_fingerprint = fingerprint(self.noise.rs)

    def message_3(self, name: str, code: int = RequestCode.REGISTER) -> bytes:
        """Message 3 (our static key and the intent); the record keys are ready after it."""
        assert self.noise is not None
        intent = Intent(RequestCode(code), name).encode()
        header = intent_header(RequestCode(code), 48 + len(intent) + rec.TAG_SIZE)
        message = header + self.noise.write_message(intent)
        send, recv = self.noise.split()
        assert send.key is not None and recv.key is not None
        self.send_cipher, self.recv_cipher = rec.RecordCipher(send.key), rec.RecordCipher(recv.key)
        return message

    async def intent(self, name: str, code: int = RequestCode.REGISTER) -> int:
        """Send message 3, read the first record: 1600, 1601, 1605, 1606, 1607 or CLOSED."""
        await self.link.send(self.message_3(name, code))
        try:
            self.welcome, _ = await self.response()
        except ConnectionClosed:
            self.welcome = CLOSED
        return self.welcome

    def seal(self, code: int, plaintext: bytes, client_id: bytes | None = None) -> bytes:
        """A request record under our key; ``client_id`` puts another id in its header."""
        assert self.send_cipher is not None
        return rec.request_record(
            self.send_cipher, self.client_id if client_id is None else client_id, code, plaintext
        )

    async def request(self, code: int, plaintext: bytes, client_id: bytes | None = None) -> None:
        await self.link.send(self.seal(code, plaintext, client_id))

    async def response(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
        """The next response record, opened (a failure to open is an AttackError)."""
        frame = await self.link.receive(timeout)
        assert self.recv_cipher is not None
        try:
            return frame.code, self.recv_cipher.open(frame.raw[:7], frame.payload)
        except rec.RecordError as exc:
            raise AttackError(f"a response record did not open: {exc}") from None

    async def silence(self, timeout: float = 2.0) -> tuple[bool, int]:
        """After a request the server should not accept: (closed?, frames it sent)."""
        return await wait_closed(self.link, timeout)

    async def upload(self, name: str, data: bytes, *, verdict: bool = True) -> int:
        """A whole upload under our own identity; the server's last answer (1604 = stored,
        1607 = refused, CLOSED). ``verdict=False`` stops at the 1603: the server then
        waits for a verdict (900, 901 or 902) for ``self.file_id``."""
        self._file_id += 1
        file_id = self._file_id
        meta = rec.FileMeta(file_id, len(data), os.urandom(16), name)
        try:
            await self.request(RequestCode.SEND_FILE, meta_plaintext(meta))
            code, plaintext = await self.response()
            if code != ResponseCode.ACKNOWLEDGED:
                return code
            _, start = rec.decode_resume(plaintext)
            chunks = rec.chunk_count(len(data))
            for index in range(start, chunks + 1):
                piece = data[(index - 1) * rec.CHUNK : index * rec.CHUNK]
                chunk = rec.FileChunk(file_id, index, index == chunks, piece).encode()
                await self.request(RequestCode.SEND_FILE, chunk)
            code, plaintext = await self.response()
            if code != ResponseCode.FILE_RECEIVED or not verdict:
                return code
            await self.request(RequestCode.CRC_OK, rec.encode_file_id(file_id))
            code, _ = await self.response()
            return code
        except ConnectionClosed:
            return CLOSED

    @property
    def file_id(self) -> int:
        return self._file_id

    async def close(self) -> None:
        await self.link.close()


def meta_plaintext(meta: rec.FileMeta) -> bytes:
    """FileMeta.encode without the client's name check: attackers send any name."""
    name = meta.name.encode("utf-8", "surrogatepass")[:65535]
    return (
        rec.encode_chunk_prefix(meta.file_id, 0, False)
        + meta.file_size.to_bytes(8, "little")
        + meta.upload_id
        + bytes([meta.digest_algorithm])
        + len(name).to_bytes(2, "little")
        + name
    )


async def register(target: str, name: str, key: KeyPair | None = None) -> tuple[V4Client, int]:
    """A full handshake with intent 825 (or see ``login``); the answer code."""
    client = await V4Client.open(target, key)
    await client.hello()
    return client, await client.intent(name, RequestCode.REGISTER)


async def login(target: str, name: str, key: KeyPair | None = None) -> tuple[V4Client, int]:
    client = await V4Client.open(target, key)
    await client.hello()
    return client, await client.intent(name, RequestCode.RECONNECT)


async def own_identity(target: str, name: str) -> V4Client:
    """Register ``name`` with a fresh key of ours and keep the connection."""
    client, code = await register(target, name)
    if code != ResponseCode.REGISTERED:
        await client.close()
        raise AttackError(f"could not register {name!r} in version 4 ({code})")
    return client


async def wait_closed(link: ServerLink, timeout: float = 2.0) -> tuple[bool, int]:
    """(closed?, frames received) on a raw link after something the server must refuse."""
    frames = 0
    try:
        while True:
            await link.receive(timeout)
            frames += 1
    except ConnectionClosed:
        return True, frames
    except AttackError:
        return False, frames


# --- keys at rest ---------------------------------------------------------------------


@dataclass
class Me4Info:
    name: str
    client_id: bytes
    private: bytes | None  # None: protected by a passphrase we do not have


def read_me4_info(path: Path) -> Me4Info:
    """me4.info (or priv4.key) as a thief finds it."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
        key_line = lines[-1]
        private = None
        if key_line.startswith("x25519:"):
            private = base64.b64decode(key_line[len("x25519:") :], validate=True)
        if len(lines) >= 3:
            return Me4Info(lines[0], bytes.fromhex(lines[1]), private)
        if private is None:
            raise ValueError("the key is protected by a passphrase")
        return Me4Info("", client_id_for(KeyPair.from_private(private).public), private)
    except (OSError, ValueError, IndexError, binascii.Error) as exc:
        raise AttackError(f"cannot read {path}: {exc}") from None


def read_server_key(path: Path) -> bytes:
    """The server's ``server.key``: Base64 of its X25519 private key."""
    try:
        private = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError, binascii.Error) as exc:
        raise AttackError(f"cannot read {path}: {exc}") from None
    if len(private) != 32:
        raise AttackError(f"{path} does not hold a 32-byte key")
    return private


# --- reading version-4 recordings -------------------------------------------------------


@dataclass
class Record:
    """A frame after the handshake, with the counter its direction gave it."""

    t: float
    frame: Frame
    n: int

    @property
    def code(self) -> int:
        return self.frame.code


@dataclass
class Upload:
    """One file attempt as an eavesdropper delimits it (names and contents are sealed)."""

    meta: Record
    resume: Record | None = None
    chunks: list[Record] = field(default_factory=list)
    received: Record | None = None  # 1603
    verdict: Record | None = None
    ack: Record | None = None
    refused: bool = False  # 1607 to the metadata

    @property
    def data_bytes(self) -> int:
        """The file bytes in its data records (the whole file when not resumed)."""
        return sum(len(c.frame.payload) - PREFIX - rec.TAG_SIZE for c in self.chunks)

    @property
    def name_length(self) -> int:
        # The metadata's fixed part: prefix 9, size 8, upload id 16, algorithm 1, length 2.
        return len(self.meta.frame.payload) - rec.TAG_SIZE - 36

    @property
    def verified(self) -> bool:
        # A 903's outcome is sealed: an eavesdropper takes it as stored (it nearly always is).
        return self.verdict is not None and self.verdict.code in (RequestCode.CRC_OK, rec.COMMIT_IF)


@dataclass
class V4View:
    conn: int
    hello: Frame | None = None  # message 1: the client's ephemeral key in the clear
    server_hello: Frame | None = None  # message 2
    intent: Frame | None = None  # message 3: its header says 825 or 827
    requests: list[Record] = field(default_factory=list)
    responses: list[Record] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    events: list[tuple[float, Frame]] = field(default_factory=list)

    @property
    def client_ids(self) -> list[bytes]:
        return sorted({r.frame.client_id for r in self.requests if r.frame.client_id})

    @property
    def welcome(self) -> int | None:
        return self.responses[0].code if self.responses else None


def is_v4(view: SessionView) -> bool:
    return any(f.is_request and f.version == VERSION for _, f in view.events[:1])


def v4_view(view: SessionView) -> V4View:
    out = V4View(view.conn, events=list(view.events))
    sent = received = 0
    current: Upload | None = None
    for t, frame in view.events:
        if frame.is_request:
            if out.hello is None:
                out.hello = frame
                continue
            if out.intent is None:
                out.intent = frame
                continue
            record = Record(t, frame, sent)
            sent += 1
            out.requests.append(record)
            if frame.code == RequestCode.SEND_FILE:
                if current is None or current.verdict is not None or current.refused:
                    current = Upload(record)
                    out.uploads.append(current)
                else:
                    current.chunks.append(record)
            elif frame.code in VERDICTS and current is not None:
                current.verdict = record
            continue
        if out.server_hello is None:
            out.server_hello = frame
            continue
        record = Record(t, frame, received)
        received += 1
        out.responses.append(record)
        if current is None:
            continue
        if frame.code == ResponseCode.ACKNOWLEDGED:
            if current.verdict is not None:
                current.ack = record
            elif current.resume is None:
                current.resume = record
            else:  # 1604 to a 902 during the upload
                current.ack = record
        elif frame.code == ResponseCode.FILE_RECEIVED:
            current.received = record
        elif frame.code == ResponseCode.SERVER_ERROR and current.resume is None:
            current.refused = True
    return out


def v4_views(sessions: list[SessionView]) -> list[V4View]:
    return [v4_view(view) for view in sessions if is_v4(view)]


def flip(raw: bytes, offset: int, mask: int = 0x01) -> bytes:
    """``raw`` with one byte XORed: what a man in the middle can always do."""
    changed = bytearray(raw)
    changed[offset] ^= mask
    return bytes(changed)


REQUEST_HEADER_SIZE = REQUEST_HEADER.size
RESPONSE_HEADER_SIZE = 7
