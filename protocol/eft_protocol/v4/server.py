"""The server's side of a version-4 connection, as a state machine with no I/O.

The driver reads a 23-byte header, asks ``payload_size(header)`` how much to read (this
raises if the header is not allowed now, before a byte of payload is read), reads it,
and passes both to ``receive``. Effects come back as in version 3. Storage that needs
the disk answers through ``upload_ready`` (how far a resumed upload got) and
``upload_complete`` (the file's BLAKE3 digest).

Rules beyond version 3: nothing is looked up or created for a peer before its third
handshake message authenticates; every failure of a header, a record or the order of
requests closes the connection without an answer (an answer would be an oracle); the
client's identity is its static key, so no request can speak for another client.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..codes import REQUEST_HEADER, RequestCode, ResponseCode
from ..errors import ProtocolError
from ..noise import HandshakeState, KeyPair, NoiseError, dh
from ..notices import (
    ClientReconnected,
    ClientRegistered,
    ClosedSilently,
    CookieSent,
    HandshakeRateLimited,
    HelloAnswered,
    NameRefused,
    Notice,
    PackStored,
    QuietTransfer,
    ReconnectRefused,
    RequestRefused,
    StorageFailure,
    Transfer,
    UploadResumed,
)
from ..registry import (
    ClientRecordV4,
    ClientRegistryV4,
    RegistrationGate,
    registration_refusal,
)
from . import records as rec
from .admission import Admission, HelloGate
from .file_digest import DigestAlgorithm, hasher_for
from .handshake import (
    FEATURE_NEXT_KEY,
    FEATURE_PACK,
    FEATURE_STREAM,
    FEATURE_WIDE_WINDOW,
    MAX_INTENT_MESSAGE,
    MIN_INTENT_MESSAGE,
    NOISE_CIPHER,
    VERSION,
    HandshakeError,
    Intent,
    Offer,
    ServerHello,
    client_id_for,
    cookie_in,
    cookie_reply_header,
    is_hello_header,
    next_key_proof,
    prologue,
    revision_1_hello_header,
    revision_1_server_hello,
    revision_1_server_hello_header,
    server_hello_header,
)
from .pack import PACK, PACK_ANSWER, Outcome, Pack, Refusal, decode_pack, encode_answer
from .server_effects import (
    Close,
    CommitGroup,
    CommitUpload,
    DiscardUpload,
    Effect,
    FinishUpload,
    MakeFolder,
    OpenUpload,
    SendFrame,
    StageUpload,
    StorePack,
    SuspendUpload,
    WriteChunk,
)
from .server_table import (
    _VERDICTS,
    _WAITING_FOR_STORAGE,
    ALLOWED,
    TRANSITIONS,
    ServerStateV4,
    Step,
)

__all__ = [
    "ALLOWED",
    "CLOSE_REASONS",
    "MAX_RECORD_PAYLOAD",
    "TRANSITIONS",
    "Close",
    "CommitGroup",
    "CommitUpload",
    "DiscardUpload",
    "Effect",
    "FinishUpload",
    "MakeFolder",
    "Notice",
    "OpenUpload",
    "SendFrame",
    "ServerSessionV4",
    "ServerStateV4",
    "StageUpload",
    "Step",
    "StorePack",
    "SuspendUpload",
    "WriteChunk",
]


MAX_RECORD_PAYLOAD = rec.MAX_PLAINTEXT + rec.TAG_SIZE

#: What a client of revision 1 is told (in a 1607 it can read) before the server closes.
REVISION_1_REFUSAL = (
    "this server speaks version 4 revision 2, this client revision 1: upgrade the client"
)


@dataclass
class _Upload:
    file_id: int
    upload_id: bytes
    name: str
    size: int
    chunks: int
    next_index: int = 1
    started: float = 0.0
    resumed_from: int = 1
    digest_algorithm: int = DigestAlgorithm.BLAKE3
    stream: bool = False


@dataclass
class _PackInFlight:
    """A 904 whose files storage is writing: each file's outcome so far (STORED until
    storage says otherwise)."""

    pack: Pack
    outcomes: list[int | Refusal]
    received_at: float


@dataclass
class _Drain:
    """A streamed file refused before its data: what of it is still to be dropped."""

    file_id: int
    chunks: int
    size: int
    next_index: int = 1


#: Streamed files the server answers together at most: half the window, so that the
#: client still has files to send while a group is made durable and answered (half the
#: narrow window; with WIDE_WINDOW, ``ServerSessionV4.group_files`` is half the wide one).
GROUP_FILES = rec.STREAM_WINDOW // 2


class ServerSessionV4:
    def __init__(
        self,
        static: KeyPair,
        registry: ClientRegistryV4,
        *,
        max_file_size: int = 2**63,
        open_registration: bool = True,
        ephemeral: KeyPair | None = None,
        rekey_interval: int = rec.REKEY_INTERVAL,
        next_static: KeyPair | None = None,
        gate: HelloGate | None = None,
        peer_address: bytes = b"",
        stream: bool = True,
    ) -> None:
        self.static = static
        #: Server-wide: whether a message 1 gets its DH, a cookie reply or is refused
        #: (``admission``); None answers every one. ``peer_address`` is the packed
        #: source address its cookies and per-address limit are for.
        self.gate = gate
        self.peer_address = peer_address
        self._cookies_sent = 0
        #: Offer FEATURE_STREAM's several files in flight when a client asks (tests of
        #: the one-at-a-time exchange turn it off).
        self._stream = stream
        #: The key this server will use next, announced to clients that offer
        #: FEATURE_NEXT_KEY (issue 28's rotation; docs/PROTOCOL-v4.md §4).
        self.next_static = next_static
        self.registry = registry
        self._rekey_interval = rekey_interval  # a protocol constant; tests shrink it
        #: What message 2 selected (0 before it): the messages' features gate on these.
        self.revision = 0
        self.features = 0
        #: STREAM's window and group size as selected (``records.stream_window``).
        self.window = 0
        self.group_files = 0
        self.max_file_size = max_file_size
        self.open_registration = open_registration
        self._ephemeral = ephemeral  # tests pin it; otherwise fresh per connection
        self.state = ServerStateV4.AWAITING_HELLO
        self.client_id: bytes | None = None
        self._registered_now = False  # the intent was a registration (not a login)
        self.name: str | None = None
        self._noise: HandshakeState | None = None
        self._send: rec.RecordCipher | None = None
        self._recv: rec.RecordCipher | None = None
        self._upload: _Upload | None = None
        self._last_file_id = 0
        self._incoming = bytearray()  # for receive_data only
        self._drain: _Drain | None = None
        self._packing: _PackInFlight | None = None
        #: STREAM: files whose last answer is not sent yet (the window the client uses).
        self.unanswered = 0
        #: STREAM: staged files and the answers that wait for the group's durability.
        #: Their answers and the notices that count them as stored, both held until the
        #: group is durable: a group whose commit fails is neither answered nor counted.
        self._group: list[Effect] = []
        self._group_files = 0

    @property
    def buffered(self) -> int:
        """Bytes ``receive_data`` holds that are not a whole frame yet."""
        return len(self._incoming)

    @property
    def has_key(self) -> bool:
        return self._send is not None

    # --- framing ----------------------------------------------------------------------

    def payload_size(self, header: bytes) -> int:
        """Check a header before its payload is read; raises ``HandshakeError`` to close."""
        client_id, version, code, size = REQUEST_HEADER.unpack(header)
        if version != VERSION:
            raise HandshakeError(f"version {version} in a version-4 connection")
        if code not in ALLOWED[self.state]:
            raise HandshakeError(f"request {code} is not allowed while {self.state.value}")
        if self.state is ServerStateV4.AWAITING_HELLO:
            if not is_hello_header(header) and header != revision_1_hello_header():
                raise HandshakeError("the first message's header is not the v4 hello")
        elif self.state is ServerStateV4.AWAITING_INTENT:
            if client_id != bytes(16) or not MIN_INTENT_MESSAGE <= size <= MAX_INTENT_MESSAGE:
                raise HandshakeError("bad third handshake message header")
        elif client_id != self.client_id or not rec.TAG_SIZE <= size <= MAX_RECORD_PAYLOAD:
            raise rec.RecordError("bad record header")
        return int(size)

    def receive_data(self, data: bytes, now: float) -> list[Effect]:
        """Bytes in, as version 3's parser takes them: every whole frame is handled.

        Stops after a frame whose effects wait for storage (``OpenUpload``,
        ``FinishUpload``): once the driver has answered (``upload_ready``,
        ``upload_complete``), it calls again (``data`` may be empty) for the rest. The
        server's driver does not use this: it reads each record straight into a pooled
        buffer (``payload_size`` then ``receive``), which saves a copy per MiB.
        """
        incoming = self._incoming
        incoming += data
        effects: list[Effect] = []
        header_size = REQUEST_HEADER.size
        while self.state not in _WAITING_FOR_STORAGE and len(incoming) >= header_size:
            header = bytes(incoming[:header_size])
            try:
                size = self.payload_size(header)
            except ProtocolError as exc:
                effects += self.abort(exc)
                break
            if len(incoming) < header_size + size:
                break
            payload = bytes(incoming[header_size : header_size + size])
            del incoming[: header_size + size]
            effects += self.receive(header, payload, now)
        return effects

    def receive(
        self,
        header: bytes,
        payload: bytes | memoryview,
        now: float,
        out: bytearray | memoryview | None = None,
    ) -> list[Effect]:
        """One frame. ``out``, when given, is a buffer (at least the payload's size) the
        driver lends for an 828's plaintext: its ``WriteChunk``'s data is then a view of
        it, and the driver takes it back once that chunk is written and hashed."""
        try:
            if len(payload) != int.from_bytes(header[19:23], "little"):
                raise HandshakeError("payload length differs from its header")
            if self.state is ServerStateV4.AWAITING_HELLO:
                return self._hello(header, bytes(payload), now)
            if self.state is ServerStateV4.AWAITING_INTENT:
                return self._intent(header, bytes(payload), now)
            assert self._recv is not None
            code = int.from_bytes(header[17:19], "little")
            plaintext: bytes | memoryview
            if out is not None and code in (RequestCode.SEND_FILE, PACK):
                # A file chunk into the driver's buffer: no new 1 MiB object per record,
                # and the driver, not each connection, bounds how many such buffers exist.
                plaintext = self._recv.open_into(header, payload, out)
            else:
                plaintext = self._recv.open(header, payload)
            return self._record(code, plaintext, now)
        except (NoiseError, HandshakeError, rec.RecordError, ValueError) as exc:
            return self._close(_reason(exc), str(exc))

    # --- handshake --------------------------------------------------------------------

    def _hello(self, header: bytes, payload: bytes, now: float) -> list[Effect]:
        if self.gate is not None:  # before any DH: the key and the offer are in clear
            refusal = self._admit(header, payload, now)
            if refusal is not None:
                return refusal
        if header == revision_1_hello_header():
            return self._revision_1_hello(header, payload)
        noise = HandshakeState(
            initiator=False,
            static=self.static,
            prologue=prologue(header),
            ephemeral=self._ephemeral,
            cipher=NOISE_CIPHER,
        )
        offer = Offer.decode(noise.read_message(payload))
        self.revision, self.features = offer.select()
        if self.next_static is None:  # selected only when there is a next key to send
            self.features &= ~FEATURE_NEXT_KEY
        if not self._stream:
            self.features &= ~FEATURE_STREAM
        if not self.features & FEATURE_STREAM:  # a window only means something with it
            self.features &= ~FEATURE_WIDE_WINDOW
        if not self.features & FEATURE_WIDE_WINDOW:  # its window bound needs groups of 128
            self.features &= ~FEATURE_PACK
        self.window = rec.stream_window(self.features)
        self.group_files = self.window // 2
        hello = ServerHello(
            self.max_file_size,
            self.open_registration,
            revision=self.revision,
            features=self.features,
        )
        if self.features & FEATURE_NEXT_KEY:
            hello = self._with_next_key(hello, noise)
        message = noise.write_message(hello.encode())
        self._noise = noise
        header = server_hello_header(self.features)
        frame = SendFrame(header + message, ResponseCode.PUBLIC_KEY_ACCEPTED)
        if self.revision == 0:  # the hello says what we speak; the client stops there
            self._advance(Step.CLOSE)
            detail = f"the client offered no revision we speak ({sorted(offer.revisions)})"
            return [
                frame,
                HelloAnswered(),
                ClosedSilently({"reason": "handshake", "detail": detail}),
                Close("handshake"),
            ]
        self._advance(Step.HELLO)
        return [frame, HelloAnswered()]

    def _admit(self, header: bytes, payload: bytes, now: float) -> list[Effect] | None:
        """The gate's word on this message 1: None to go on with the DH, else what to
        do instead (a cookie reply, or close). Revision 1 has no cookie: under load its
        hello is closed, or it would be the way around the cookies."""
        assert self.gate is not None
        revision_1 = header == revision_1_hello_header()
        cookie = b"" if revision_1 else cookie_in(payload[32:])
        admission = self.gate.admit(self.peer_address, payload[:32], cookie, now)
        if admission is Admission.ANSWER:
            return None
        if admission is Admission.RATE_LIMITED:
            self._advance(Step.CLOSE)
            return [HandshakeRateLimited({"limit": "handshake_rate"}), Close("rate_limited")]
        self._cookies_sent += 1
        if revision_1 or self._cookies_sent > 1:  # a client that got a cookie sends it
            detail = "revision 1's hello under load" if revision_1 else "a cookie ignored"
            return self._close("handshake", detail)
        cookie = self.gate.cookie_for(self.peer_address, payload[:32], now)
        frame = SendFrame(cookie_reply_header() + cookie, ResponseCode.PUBLIC_KEY_ACCEPTED)
        return [frame, CookieSent({"stale": bool(cookie_in(payload[32:]))})]

    def _with_next_key(self, hello: ServerHello, noise: HandshakeState) -> ServerHello:
        """The next key, proven by a DH of it with the client's ephemeral key."""
        assert self.next_static is not None and noise.re is not None
        public = self.next_static.public
        proof = next_key_proof(dh(self.next_static, noise.re), self.static.public, public)
        return dataclasses.replace(hello, next_key=public, next_key_proof=proof)

    def _revision_1_hello(self, header: bytes, payload: bytes) -> list[Effect]:
        """A client of revision 1 (no offer, the ChaChaPoly suite) gets revision 1's
        message 2, so that its message 3 can be answered with a 1607 it reads: a refusal
        in words, not a closed connection it would retry (docs/PROTOCOL-v4.md §11)."""
        noise = HandshakeState(
            initiator=False,
            static=self.static,
            prologue=prologue(header),
            ephemeral=self._ephemeral,
            cipher="ChaChaPoly",
        )
        noise.read_message(payload)
        hello = revision_1_server_hello(self.max_file_size, self.open_registration)
        message = noise.write_message(hello)
        self._noise, self.revision = noise, 1
        self._advance(Step.HELLO)
        frame = revision_1_server_hello_header() + message
        return [SendFrame(frame, ResponseCode.PUBLIC_KEY_ACCEPTED), HelloAnswered()]

    def _intent(self, header: bytes, payload: bytes, now: float) -> list[Effect]:
        noise = self._noise
        assert noise is not None
        intent = Intent.decode(noise.read_message(payload))
        code = int.from_bytes(header[17:19], "little")
        if intent.code != code:
            raise HandshakeError("the intent's code differs from its header's")
        assert noise.rs is not None
        send, recv = noise.split()
        assert send.key is not None and recv.key is not None
        interval = self._rekey_interval
        self._send = rec.RecordCipher(send.key, rekey_interval=interval)
        self._recv = rec.RecordCipher(recv.key, rekey_interval=interval)
        self._noise = None
        if self.revision == 1:  # nothing looked up or stored: refused in its words
            return self._error(rec.ErrorCode.BAD_REQUEST, REVISION_1_REFUSAL)
        client_id = client_id_for(noise.rs)
        by_key = self.registry.client_v4_by_key(noise.rs)
        if intent.code is RequestCode.REGISTER:
            # Only a registration asks who holds the name (a log-in is its key's record).
            by_name = self.registry.client_v4_by_name(intent.name)
            # The hello's flag is the whole policy only for a registry without one of
            # its own; a gated registry decides (and logs) below, name by name.
            gated = isinstance(self.registry, RegistrationGate)
            if not self.open_registration and by_key is None and not gated:
                return self._error(rec.ErrorCode.REGISTRATION_CLOSED, "registration is closed")
            if (by_key is not None and by_key.name != intent.name) or (
                by_key is None and by_name is not None
            ):
                self._advance(Step.CLOSE)
                return [
                    NameRefused(),
                    self._respond(ResponseCode.REGISTRATION_FAILED, b""),
                    Close("name_taken"),
                ]
            if by_key is None:  # a new client: the server's policy may refuse it
                refusal = registration_refusal(
                    self.registry, intent.name, client_id, VERSION, now, token=intent.token
                )
                if refusal is not None:
                    return self._error(
                        rec.ErrorCode.REGISTRATION_CLOSED, f"registration refused: {refusal}"
                    )
            record = ClientRecordV4(client_id, intent.name, noise.rs, now, now)
            self.registry.save_client_v4(record if by_key is None else by_key.seen(now))
            welcome: type[Notice] = ClientRegistered
            response = ResponseCode.REGISTERED
        else:
            if by_key is None or by_key.name != intent.name:
                self._advance(Step.CLOSE)
                return [
                    ReconnectRefused(),
                    self._respond(ResponseCode.RECONNECT_DENIED, b""),
                    Close("unknown_client"),
                ]
            self.registry.save_client_v4(by_key.seen(now))
            welcome, response = ClientReconnected, ResponseCode.RECONNECTED
        self.client_id, self.name = client_id, intent.name
        self._registered_now = intent.code is RequestCode.REGISTER  # for registration_lost
        self._advance(Step.WELCOMED if intent.code is RequestCode.REGISTER else Step.LOGGED_IN)
        return [
            welcome({"client_id": client_id.hex(), "version": VERSION}),
            self._respond(response, client_id),
        ]

    # --- records ----------------------------------------------------------------------

    def _record(self, code: int, plaintext: bytes | memoryview, now: float) -> list[Effect]:
        if code == RequestCode.SEND_FILE:
            record = rec.decode_file_record(plaintext)
            if self.state is ServerStateV4.DRAINING:
                return self._drained(record)
            if isinstance(record, rec.FileMeta):
                if record.directory:
                    return self._folder(record)
                if record.stream:
                    return self._stream_meta(record, now)
                # One at a time again: what is staged is answered first, in order.
                return [*self.flush_group(), *self._meta(record, now)]
            return self._chunk(record, now)
        if code == rec.COMMIT_IF:
            return self._commit_if(rec.CommitIf.decode(plaintext), now)
        if code == PACK:
            return self._pack(decode_pack(plaintext), now)
        file_id = rec.decode_file_id(plaintext)
        upload = self._upload
        if upload is None or file_id != upload.file_id:
            raise rec.RecordError("verdict for a file that is not open")
        was_complete = self.state is ServerStateV4.AWAITING_VERDICT
        self._upload = None
        self._advance(_VERDICTS[code])
        ack = self._respond(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(file_id))
        fields = self._fields(upload, now)
        if code == RequestCode.CRC_OK:
            assert self.client_id is not None and self._digest is not None
            commit = CommitUpload(
                self.client_id, upload.name, upload.size, self._digest, upload.digest_algorithm
            )
            return [commit, Transfer({"outcome": "verified", **fields}), ack]
        if code == RequestCode.CRC_RETRY:
            outcome = "retried"
        else:  # 902: giving up after the last retry, or abandoning an upload midway
            outcome = "gave_up" if was_complete else "aborted"
        return [DiscardUpload(), Transfer({"outcome": outcome, **fields}), ack]

    def _meta(self, meta: rec.FileMeta, now: float) -> list[Effect]:
        if self.state is not ServerStateV4.IDLE:
            raise rec.RecordError("file metadata while an upload is open")
        if meta.file_id <= self._last_file_id:
            raise rec.RecordError("file ids must increase within a connection")
        self._last_file_id = meta.file_id
        refusal = self._meta_refusal(meta)
        if refusal is not None:
            self._advance(Step.STREAM_REFUSED if meta.stream else Step.METADATA_REFUSED)
            if meta.stream:
                self._drain = _Drain(meta.file_id, rec.chunk_count(meta.file_size), meta.file_size)
            return self._error(*refusal, close=False)
        assert self.client_id is not None
        self._upload = _Upload(
            meta.file_id,
            meta.upload_id,
            meta.name,
            meta.file_size,
            rec.chunk_count(meta.file_size),
            started=now,
            digest_algorithm=meta.digest_algorithm,
            stream=meta.stream,
        )
        self._advance(Step.METADATA)
        return [
            OpenUpload(
                self.client_id,
                meta.upload_id,
                meta.name,
                meta.file_size,
                meta.digest_algorithm,
                stream=meta.stream,
            )
        ]

    def _meta_refusal(self, meta: rec.FileMeta) -> tuple[int, str] | None:
        if meta.bad_name is not None:
            return rec.ErrorCode.BAD_FILE_NAME, str(meta.bad_name)
        if meta.digest_algorithm not in DigestAlgorithm._value2member_map_:
            return rec.ErrorCode.UNKNOWN_DIGEST, f"unknown digest algorithm {meta.digest_algorithm}"
        if meta.file_size > self.max_file_size:
            return rec.ErrorCode.TOO_LARGE, "the file is over the limit"
        return None

    # --- several files in flight (FEATURE_STREAM, docs/PROTOCOL-v4.md section 8.1) -----

    def _stream_meta(self, meta: rec.FileMeta, now: float) -> list[Effect]:
        if not self.features & FEATURE_STREAM:
            raise rec.RecordError("STREAM metadata without the STREAM feature")
        if self.unanswered >= self.window:
            raise rec.RecordError(f"more than {self.window} files unanswered")
        effects = self._meta(meta, now)
        if self.state is not ServerStateV4.DRAINING:
            self.unanswered += 1  # its last answer comes with its group
        return effects

    def _folder(self, meta: rec.FileMeta) -> list[Effect]:
        """An empty folder of a tree: made (durably) and answered at once, in the order
        of the metadata answers (its 1604 says next_chunk 0: nothing to send)."""
        if not self.features & FEATURE_STREAM:
            raise rec.RecordError("folder metadata without the STREAM feature")
        if self.state is not ServerStateV4.IDLE:
            raise rec.RecordError("folder metadata while an upload is open")
        if meta.file_id <= self._last_file_id:
            raise rec.RecordError("file ids must increase within a connection")
        self._last_file_id = meta.file_id
        self._advance(Step.METADATA_REFUSED)  # IDLE stays IDLE, whatever the answer
        if meta.bad_name is not None:
            return self._error(rec.ErrorCode.BAD_FILE_NAME, str(meta.bad_name), close=False)
        assert self.client_id is not None
        return [
            MakeFolder(self.client_id, meta.name),
            Transfer({"outcome": "folder", "file": meta.name, "version": VERSION}),
            self._respond(ResponseCode.ACKNOWLEDGED, rec.encode_resume(meta.file_id, 0)),
        ]

    def folder_refused(self, detail: str) -> list[Effect]:
        """The folder could not be made: a file or a link is in its way (error 2; the
        session goes on)."""
        return self._error(rec.ErrorCode.BAD_FILE_NAME, detail, close=False)

    def _drained(self, record: rec.FileMeta | rec.FileChunk) -> list[Effect]:
        """A refused streamed file's data: checked like any data, then dropped."""
        drain = self._drain
        assert drain is not None
        if not isinstance(record, rec.FileChunk) or drain.next_index > drain.chunks:
            raise rec.RecordError("a new file before the refused one's data ended")
        final = drain.next_index == drain.chunks
        expected = drain.size - (drain.chunks - 1) * rec.CHUNK if final else rec.CHUNK
        if (
            record.file_id != drain.file_id
            or record.index != drain.next_index
            or record.final != final
            or len(record.data) != expected
        ):
            raise rec.RecordError("refused file's data out of order")
        drain.next_index += 1
        self._advance(Step.DRAIN_CHUNK)
        return []

    def _commit_if(self, commit: rec.CommitIf, now: float) -> list[Effect]:
        drain = self._drain
        if self.state is ServerStateV4.DRAINING:
            assert drain is not None
            if commit.file_id != drain.file_id or drain.next_index <= drain.chunks:
                raise rec.RecordError("903 for a refused file before its data ended")
            self._drain = None
            self._advance(Step.DRAIN_END)
            return self.flush_group() if commit.sync_now else []
        upload = self._upload
        if upload is None or commit.file_id != upload.file_id:
            raise rec.RecordError("903 for a file that is not open")
        if commit.digest_algorithm != upload.digest_algorithm:
            raise rec.RecordError("903's digest algorithm is not the metadata's")
        assert self.client_id is not None and self._digest is not None
        self._upload = None
        self._advance(Step.COMMITTED_IF)
        fields = self._fields(upload, now)
        received = rec.encode_received(
            upload.file_id, upload.size, self._digest, upload.digest_algorithm
        )
        matched = commit.digest == self._digest
        outcome = rec.Outcome.STORED if matched else rec.Outcome.DIGEST_DIFFERED
        self._group += [
            self._respond(ResponseCode.FILE_RECEIVED, received),
            self._respond(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(upload.file_id, outcome)),
        ]
        self._group_files += 1
        effects: list[Effect]
        if matched:
            stage = StageUpload(
                self.client_id, upload.name, upload.size, self._digest, upload.digest_algorithm
            )
            # At debug level: the connection logs one line for all its streamed files
            # (``files_streamed``); 10,000 small files made 10,000 info lines (issue 25).
            # Counted with the group's answers, once it is durable.
            effects = [stage]
            self._group.append(QuietTransfer({"outcome": "verified", **fields}))
        else:
            effects = [DiscardUpload(), Transfer({"outcome": "retried", **fields})]
        if commit.sync_now or self._group_files >= self.group_files:
            effects += self.flush_group()
        return effects

    def flush_group(self) -> list[Effect]:
        """The staged files made durable, then their answers (1603, 1604; 1608) and the
        notices that count them, in order."""
        if not self._group_files:
            return []
        answers, self._group = self._group, []
        self.unanswered -= self._group_files
        self._group_files = 0
        return [CommitGroup(), *answers]

    # --- several small files in one record (FEATURE_PACK, section 8.2) ----------------

    def _pack(self, pack: Pack, now: float) -> list[Effect]:
        """A 904: each file's name, size and digest checked here; those that pass go to
        storage (``StorePack``), which answers with ``pack_stored``."""
        if not self.features & FEATURE_PACK:
            raise rec.RecordError("904 without the PACK feature")
        if pack.first_file_id <= self._last_file_id:
            raise rec.RecordError("file ids must increase within a connection")
        if self.unanswered + len(pack.files) > self.window:
            raise rec.RecordError(f"more than {self.window} files unanswered")
        self._last_file_id = pack.last_file_id
        self.unanswered += len(pack.files)
        algorithm = pack.digest_algorithm
        outcomes: list[int | Refusal] = []
        storing = []
        for file in pack.files:
            refusal = self._packed_refusal(file.bad_name, algorithm, len(file.data))
            if refusal is not None:
                outcomes.append(refusal)
                continue
            hasher = hasher_for(algorithm)
            hasher.update(file.data)
            if hasher.digest() != file.digest:
                outcomes.append(Outcome.DIGEST_DIFFERED)
                continue
            outcomes.append(Outcome.STORED)
            storing.append(file)
        assert self.client_id is not None
        self._packing = _PackInFlight(pack, outcomes, now)
        self._advance(Step.PACK)
        return [StorePack(self.client_id, algorithm, storing)]

    def _packed_refusal(
        self, bad_name: Exception | None, algorithm: int, size: int
    ) -> Refusal | None:
        if bad_name is not None:
            return Refusal(rec.ErrorCode.BAD_FILE_NAME, str(bad_name))
        if algorithm not in DigestAlgorithm._value2member_map_:
            return Refusal(rec.ErrorCode.UNKNOWN_DIGEST, f"unknown digest algorithm {algorithm}")
        if size > self.max_file_size:
            return Refusal(rec.ErrorCode.TOO_LARGE, "the file is over the limit")
        return None

    def pack_stored(self, refused: dict[int, Refusal], now: float) -> list[Effect]:
        """Storage staged the pack's files but those in ``refused`` (by file id: no
        room, something in the way of the name). The 1608 waits for the group. Each
        file's transfer took from its record's arrival to ``now`` (its verdict)."""
        packing, self._packing = self._packing, None
        assert packing is not None and self.state is ServerStateV4.STORING_PACK
        self._advance(Step.PACK_STORED)
        pack, outcomes = packing.pack, packing.outcomes
        effects: list[Effect] = []
        sizes: list[int] = []
        retried = 0
        for number, file in enumerate(pack.files):
            refusal = refused.get(file.file_id)
            if refusal is not None and outcomes[number] == Outcome.STORED:
                outcomes[number] = refusal
            outcome = outcomes[number]
            if outcome == Outcome.STORED:
                sizes.append(len(file.data))
            elif outcome == Outcome.DIGEST_DIFFERED:
                retried += 1
            else:
                assert isinstance(outcome, Refusal)
                effects.append(
                    RequestRefused(
                        {"error_code": outcome.error, "detail": outcome.message, "file": file.name}
                    )
                )
        stored = PackStored(  # counted with the group's answers, once it is durable
            {
                "files": len(sizes),
                "bytes": sum(sizes),
                "sizes": sizes,
                "retried": retried,
                "refused": len(pack.files) - len(sizes) - retried,
                "duration": now - packing.received_at,
                "version": VERSION,
            }
        )
        answer = encode_answer(pack.first_file_id, outcomes)
        self._group += [self._respond(PACK_ANSWER, answer), stored]
        self._group_files += len(pack.files)
        if pack.sync_now or self._group_files >= self.group_files:
            effects += self.flush_group()
        return effects

    def upload_ready(
        self, durable_chunks: int, *, room: int | None = None, conflict: str | None = None
    ) -> list[Effect]:
        """Storage found ``durable_chunks`` whole chunks of this upload already on disk.

        The driver measures, the session decides: ``room`` is the bytes the server can
        still take for it (free space less the margin, or the client's quota left;
        None: no limit known), ``conflict`` says why the name cannot be stored (a file
        where a folder of the path should be, or a folder where the file should be).
        Either refusal comes before any data, and the session goes on."""
        upload = self._upload
        assert upload is not None and self.state is ServerStateV4.OPENING
        refusal = self._refusal(upload, 0 if upload.stream else durable_chunks, room, conflict)
        if refusal is not None:
            self._upload = None
            if upload.stream:  # its data and 903 are on the way: dropped as they come
                self.unanswered -= 1
                self._drain = _Drain(upload.file_id, upload.chunks, upload.size)
                self._advance(Step.STREAM_UNREADY)
                return [DiscardUpload(), *self._error(*refusal, close=False)]
            self._advance(Step.UPLOAD_REFUSED)
            # A resumed upload stays for later (room may come); a fresh one is nothing.
            keep: Effect = SuspendUpload() if durable_chunks else DiscardUpload()
            return [keep, *self._error(*refusal, close=False)]
        # The final chunk is always sent again: only it completes the file. A streamed
        # file's data is already on its way from chunk 1.
        durable = 0 if upload.stream else durable_chunks
        upload.next_index = min(durable, upload.chunks - 1) + 1
        upload.resumed_from = upload.next_index
        self._advance(Step.UPLOAD_READY)
        payload = rec.encode_resume(upload.file_id, upload.next_index)
        effects: list[Effect] = [self._respond(ResponseCode.ACKNOWLEDGED, payload)]
        if upload.next_index > 1:
            effects.insert(0, UploadResumed({"chunk": upload.next_index, "of": upload.chunks}))
        return effects

    def _chunk(self, chunk: rec.FileChunk, now: float) -> list[Effect]:
        upload = self._upload
        if self.state is not ServerStateV4.UPLOADING or upload is None:
            raise rec.RecordError("file data without an open upload")
        if chunk.file_id != upload.file_id or chunk.index != upload.next_index:
            raise rec.RecordError("file data out of order")
        final = chunk.index == upload.chunks
        expected = upload.size - (upload.chunks - 1) * rec.CHUNK if final else rec.CHUNK
        if chunk.final != final or len(chunk.data) != expected:
            raise rec.RecordError("file data of the wrong size or finality")
        upload.next_index += 1
        effects: list[Effect] = [WriteChunk(chunk.index, chunk.data)]
        self._advance(Step.FINAL_CHUNK if final else Step.CHUNK)
        if final:
            effects.append(FinishUpload(stream=upload.stream))
        return effects

    def upload_complete(self, digest: bytes, now: float) -> list[Effect]:
        upload = self._upload
        assert upload is not None and self.state is ServerStateV4.FINISHING
        self._digest = digest
        if upload.stream:  # its 1603 goes with its group, after the client's 903
            self._advance(Step.STREAM_COMPLETE)
            return [QuietTransfer({"outcome": "received", **self._fields(upload, now)})]
        self._advance(Step.UPLOAD_COMPLETE)
        payload = rec.encode_received(upload.file_id, upload.size, digest, upload.digest_algorithm)
        return [
            Transfer({"outcome": "received", **self._fields(upload, now)}),
            self._respond(ResponseCode.FILE_RECEIVED, payload),
        ]

    def storage_failed(self, reason: str, *, busy: bool = False, detail: str = "") -> list[Effect]:
        """Storage could not go on; ``busy``: another connection still holds the upload.
        ``detail`` says why, for the user (no paths: the client shows it)."""
        self._upload = self._packing = None
        self._group, self._group_files = [], 0  # never answered: the client sends again
        if busy:
            error, message = rec.ErrorCode.BUSY, "the upload is busy on another connection"
            effects: list[Effect] = []  # keep the partial upload for the later resume
        else:
            error, message = (
                rec.ErrorCode.STORAGE,
                (f"the server could not store it: {detail or reason}"),
            )
            effects = [DiscardUpload()]
        return [
            *effects,
            StorageFailure({"reason": reason, "detail": detail or reason}),
            *self._error(error, message),
        ]

    def registration_lost(self) -> list[Effect]:
        """The identity just answered (not yet sent) did not hold: the registry found,
        when writing it, that the name or the key was taken meanwhile (another server
        sharing the database registered it first). Refused as a taken name, or for a
        login (its row freed and the name taken again elsewhere) as an unknown client."""
        self.client_id = self.name = None
        self._advance(Step.CLOSE)
        if not self._registered_now:
            return [
                ReconnectRefused(),
                self._respond(ResponseCode.RECONNECT_DENIED, b""),
                Close("unknown_client"),
            ]
        return [
            NameRefused({"reason": "taken_meanwhile"}),
            self._respond(ResponseCode.REGISTRATION_FAILED, b""),
            Close("name_taken"),
        ]

    def connection_lost(self) -> list[Effect]:
        self._advance(Step.CLOSE)
        if self._upload is None:
            return []
        upload, self._upload = self._upload, None
        # A streamed upload is fresh and its client keeps no upload id: nothing to keep.
        keep: Effect = DiscardUpload() if upload.stream else SuspendUpload()
        return [keep, Transfer({"outcome": "aborted", **self._fields(upload)})]

    @staticmethod
    def _refusal(
        upload: _Upload, durable_chunks: int, room: int | None, conflict: str | None
    ) -> tuple[int, str] | None:
        if conflict is not None:
            return rec.ErrorCode.BAD_FILE_NAME, conflict
        needed = upload.size - min(durable_chunks, upload.chunks - 1) * rec.CHUNK
        if room is not None and needed > max(room, 0):  # an empty file always fits
            return rec.ErrorCode.NO_SPACE, (
                f"no space: the file needs {needed} more bytes, the server has room for "
                f"{max(room, 0)}"
            )
        return None

    # --- helpers ----------------------------------------------------------------------

    def _advance(self, step: Step) -> None:
        """The one place the state changes: a step the table lacks is a bug here."""
        self.state = TRANSITIONS[(self.state, step)]

    _digest: bytes | None = None

    def _fields(self, upload: _Upload, now: float | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "file": upload.name,
            "bytes": upload.size,
            "version": VERSION,
        }
        if upload.resumed_from > 1:  # only a transfer that did resume says where from
            fields["resumed_from_chunk"] = upload.resumed_from
        if now is not None:
            fields["duration"] = now - upload.started
        return fields

    def _respond(self, code: int, plaintext: bytes) -> SendFrame:
        send = self._send
        assert send is not None
        return SendFrame(None, code, lambda: rec.response_record(send, code, plaintext))

    def _error(self, error: int, message: str, *, close: bool = True) -> list[Effect]:
        effects: list[Effect] = [
            # "error_code": the number sent in 1607; "error", in every log line, is text.
            RequestRefused({"error_code": int(error), "detail": message}),
            self._respond(ResponseCode.SERVER_ERROR, rec.encode_error(error, message)),
        ]
        if close:
            self._advance(Step.CLOSE)
            effects.append(Close(f"error {error}"))
        return effects

    def abort(self, error: Exception) -> list[Effect]:
        """The driver found the stream unusable (a bad header): close, saying nothing."""
        return self._close(_reason(error), str(error))

    def _close(self, reason: str, detail: str) -> list[Effect]:
        effects: list[Effect] = [ClosedSilently({"reason": reason, "detail": detail})]
        if self._upload is not None and self.state in (
            ServerStateV4.UPLOADING,
            ServerStateV4.FINISHING,
            ServerStateV4.AWAITING_COMMIT,
        ):
            effects.append(DiscardUpload() if self._upload.stream else SuspendUpload())
            self._upload = None
        self._advance(Step.CLOSE)
        effects.append(Close(reason))
        return effects


#: Why a version-4 connection was closed, as a metric label: a small fixed set.
CLOSE_REASONS = ("handshake", "bad_record", "malformed")


def _reason(error: Exception) -> str:
    if isinstance(error, NoiseError):
        return "handshake"
    reason = getattr(error, "reason", "malformed")
    return reason if reason in CLOSE_REASONS else "malformed"
