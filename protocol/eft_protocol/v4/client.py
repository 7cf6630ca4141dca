"""The client's side of a version-4 connection, as a state machine with no I/O.

``start`` gives the first frame; ``receive(header, payload)`` takes each response and
returns a ``ReplyV4``. Server authentication happens in ``_server_hello``: the caller's
``check_server`` sees the server's fingerprint before the client reveals anything of
its own (its static key and name travel in message 3, after the check) and raises to
stop. Files: ``begin_file`` sends the metadata, the server answers where to start (a
resumed upload starts past what it already holds), and ``chunk_records`` seals the
rest. The CRC rule of version 3 becomes a digest rule (BLAKE3, ``file_digest``) with the
same retries.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..codes import MAX_FILE_ATTEMPTS, RESPONSE_HEADER, RequestCode, ResponseCode
from ..errors import AttemptsExhausted, NameTaken, ResponseError, UnexpectedResponse
from ..noise import HandshakeState, KeyPair, NoiseError, dh
from . import paths
from . import records as rec
from .file_digest import DigestAlgorithm
from .handshake import (
    COOKIE_REPLY_SIZE,
    FEATURE_NEXT_KEY,
    FEATURE_PACK,
    FEATURE_STREAM,
    FEATURE_WIDE_WINDOW,
    NEXT_KEY_SIZE,
    NOISE_CIPHER,
    SERVER_HELLO_SIZE,
    VERSION,
    HandshakeError,
    Intent,
    Offer,
    ServerHello,
    client_id_for,
    cookie_reply_header,
    fingerprint,
    hello_header,
    intent_header,
    next_key_proof,
    prologue,
    server_hello_header,
)
from .pack import (
    MAX_ANSWER_SIZE,
    PACK,
    PACK_ANSWER,
    PACK_FILES,
    Refusal,
    decode_answer,
    encode_pack,
)

#: The largest response payload: a 1608 whose every file was refused, else a 1607.
MAX_RESPONSE_PAYLOAD = max(3 + 200 + rec.TAG_SIZE + 64, MAX_ANSWER_SIZE + rec.TAG_SIZE)


class NotVersion4(ResponseError):
    """The server did not answer the version-4 hello: it may speak only version 3, or
    not be an eft server at all; the message says which, from the bytes that came."""

    reason = "not_version_4"

    def __init__(self, message: str, *, version_3: bool = False) -> None:
        super().__init__(message)
        self.version_3 = version_3

    @classmethod
    def from_header(cls, header: bytes) -> NotVersion4:
        version, code, _size = RESPONSE_HEADER.unpack(header)
        if version == VERSION and code == ResponseCode.PUBLIC_KEY_ACCEPTED:
            return cls(
                f"the server's answer to the hello is not revision 2's ({header.hex()}...): "
                "a server of another revision of version 4, or something in between"
            )
        if version == 3 and code in set(ResponseCode):
            return cls(f"the server answered in version 3 (response {code})", version_3=True)
        if all(0x20 <= byte < 0x7F or byte in b"\t\r\n" for byte in header):
            text = header.decode("ascii").strip()
            return cls(f"the server answered in text ({text!r}...): it is not an eft server")
        return cls(f"the server's answer ({header.hex()}...) is not eft's: is it an eft server?")


class Decision(enum.Enum):
    """What a client does about a 1607, decided here so every driver does the same."""

    RETRY = "retry"  # a new connection may succeed: busy elsewhere, or the server's fault
    STORAGE_FAILED = "storage_failed"  # the server's disk: nothing of ours to change
    REGISTRATION_CLOSED = "registration_closed"
    BAD_FILE_NAME = "bad_file_name"  # the user must rename the file
    NO_ROOM = "no_room"  # no space on the server, or over quota: refused before any data
    FAIL = "fail"


_DECISIONS: dict[int, Decision] = {
    rec.ErrorCode.BUSY: Decision.RETRY,
    rec.ErrorCode.INTERNAL: Decision.RETRY,
    rec.ErrorCode.STORAGE: Decision.STORAGE_FAILED,
    rec.ErrorCode.REGISTRATION_CLOSED: Decision.REGISTRATION_CLOSED,
    rec.ErrorCode.BAD_FILE_NAME: Decision.BAD_FILE_NAME,
    rec.ErrorCode.NO_SPACE: Decision.NO_ROOM,
    rec.ErrorCode.OVER_QUOTA: Decision.NO_ROOM,
}


class RefusedByServer(ResponseError):
    """The server answered 1607 with an error number (``records.ErrorCode``) and message;
    ``decision`` says what to do about it."""

    reason = "server_error"

    def __init__(self, error: int, message: str) -> None:
        super().__init__(f"server error {error}: {message}")
        self.error = error
        self.decision = _DECISIONS.get(error, Decision.FAIL)


class ClientStateV4(enum.Enum):
    AWAITING_SERVER_HELLO = "awaiting_server_hello"
    AWAITING_WELCOME = "awaiting_welcome"  # message 3 sent; waiting for 1600/1605
    READY = "ready"
    OPENING = "opening"  # metadata sent; waiting for where to start
    SENDING = "sending"
    AWAITING_DIGEST = "awaiting_digest"
    AWAITING_ACK = "awaiting_ack"
    CLOSED = "closed"


@dataclass(frozen=True)
class ReplyV4:
    send: list[bytes]
    #: The server's fingerprint, as pinned or checked.
    fingerprint: str | None = None
    #: 1600: the server registered our key under this client id.
    registered: bytes | None = None
    logged_in: bytes | None = None
    #: The server knows the upload: send chunks from this index (1: from the start).
    start_chunk: int | None = None
    #: 1603 arrived and matched: the file is verified once 1604 comes.
    digest_ok: bool | None = None
    resend_file: bool = False
    file_verified: bool = False
    #: A cookie reply (the server is under load): ``send`` is message 1 again, with
    #: the cookie; the server hello comes next.
    cookie: bool = False
    #: The digest differed on the last attempt allowed: 902 is sent, nothing is stored.
    gave_up: bool = False
    attempt: int = 0
    #: STREAM: the file (its id) this answer is about; the answers of several files
    #: in flight come in file-id order.
    file_id: int | None = None
    #: PACK: a 1608, the outcome of each file of the pack whose first id is ``file_id``
    #: (``pack.Outcome.STORED``, ``DIGEST_DIFFERED``, or a ``pack.Refusal``).
    pack_outcomes: list[int | Refusal] | None = None


class ClientSessionV4:
    def __init__(
        self,
        static: KeyPair,
        name: str,
        *,
        register: bool,
        check_server: Callable[[str], None],
        ephemeral: KeyPair | None = None,
        offer: Offer | None = None,
        rekey_interval: int = rec.REKEY_INTERVAL,
        token: bytes = b"",
    ) -> None:
        self.static = static
        self.name = name
        #: The operator's invitation token, sent in the intent of a registration only.
        self.token = token
        self.offer = offer or Offer()
        self._rekey_interval = rekey_interval  # a protocol constant; tests shrink it
        self.register = register
        self.check_server = check_server
        self.client_id = client_id_for(static.public)
        self.state = ClientStateV4.AWAITING_SERVER_HELLO
        self.server_hello: ServerHello | None = None
        #: The server's next key, proven by the current (pinned) one and by itself:
        #: the fingerprint a pin may move to when the server rotates (issue 28).
        self.next_server_fingerprint: str | None = None
        self._noise: HandshakeState | None = None
        self._ephemeral = ephemeral
        self._send: rec.RecordCipher | None = None
        self._recv: rec.RecordCipher | None = None
        self._file_id = 0
        self._file: _File | None = None
        self._retrying: tuple[str, int] | None = None  # (name, attempts) after a 901
        # STREAM: files sent whose metadata is not answered yet, and files whose
        # outcome (1603, then the 5-byte 1604) is still to come; both in file-id order.
        self._unstarted: deque[_File] = deque()
        self._unsettled: deque[_File] = deque()
        self._folders = 0  # folders sent, not answered yet
        #: PACK: packs sent and not answered, by first file id: how many files each.
        self._packs: dict[int, int] = {}
        self._packed = 0  # their files

    @property
    def ready(self) -> bool:
        return self.state is ClientStateV4.READY

    @property
    def revision(self) -> int:
        """The revision the server selected (0 before message 2): gate features on it."""
        return self.server_hello.revision if self.server_hello else 0

    @property
    def features(self) -> int:
        """The optional features the server selected (bits of ``Offer.features``)."""
        return self.server_hello.features if self.server_hello else 0

    @property
    def stream_window(self) -> int:
        """How many files may be in flight (0: the server has no STREAM, one at a time)."""
        return rec.stream_window(self.features)

    @property
    def pack_files(self) -> int:
        """How many files one 904 may carry (0: the server did not select PACK). A server
        that selects PACK without the wide window is not followed: with a window of 64,
        a pack smaller than a group and not the last would wait for an answer the server
        owes only at 32 files (section 8.2, item 5)."""
        needed = FEATURE_PACK | FEATURE_STREAM | FEATURE_WIDE_WINDOW
        return PACK_FILES if self.features & needed == needed else 0

    @property
    def last_file_id(self) -> int:
        """The file id of the last metadata record made."""
        return self._file_id

    @property
    def unanswered(self) -> int:
        """Streamed files (and folders) whose outcome has not come yet."""
        return len(self._unsettled) + self._folders + self._packed

    def start(self) -> bytes:
        """Message 1 (again after a cookie reply: a new transcript, the same key)."""
        offer = self.offer.encode()
        header = hello_header(32 + len(offer))
        self._noise = HandshakeState(
            initiator=True,
            static=self.static,
            prologue=prologue(header),
            ephemeral=self._ephemeral,
            cipher=NOISE_CIPHER,
        )
        message = self._noise.write_message(offer)
        self._ephemeral = self._noise.e  # the cookie is for this key
        return header + message

    # --- responses --------------------------------------------------------------------

    def payload_size(self, header: bytes) -> int:
        version, _code, size = RESPONSE_HEADER.unpack(header)
        if self.state is ClientStateV4.AWAITING_SERVER_HELLO:
            if header == server_hello_header():
                return SERVER_HELLO_SIZE
            if header == cookie_reply_header() and not self.offer.cookie:
                return COOKIE_REPLY_SIZE  # one cookie reply per connection, no more
            if self.offer.features & FEATURE_NEXT_KEY and header == server_hello_header(
                FEATURE_NEXT_KEY
            ):
                return SERVER_HELLO_SIZE + NEXT_KEY_SIZE
            raise NotVersion4.from_header(header)
        if version != VERSION or not rec.TAG_SIZE <= size <= MAX_RESPONSE_PAYLOAD:
            raise ResponseError(f"bad response header: version {version}, {size} bytes")
        return int(size)

    def receive(self, header: bytes, payload: bytes) -> ReplyV4:
        try:
            if self.state is ClientStateV4.AWAITING_SERVER_HELLO:
                if len(payload) == COOKIE_REPLY_SIZE and header == cookie_reply_header():
                    return self._cookie_reply(payload)
                return self._server_hello(payload)
            assert self._recv is not None
            plaintext = self._recv.open(header, payload)
        except (NoiseError, rec.RecordError) as exc:
            self.state = ClientStateV4.CLOSED
            raise ResponseError(f"the server's answer failed authentication: {exc}") from None
        code = int.from_bytes(header[1:3], "little")
        if code == ResponseCode.SERVER_ERROR:
            error, message = rec.decode_error(plaintext)
            raise RefusedByServer(error, message)
        return self._record(code, plaintext)

    def _cookie_reply(self, cookie: bytes) -> ReplyV4:
        """The server is under load: message 1 again, the same ephemeral key, the offer
        carrying the cookie (proof that we receive at our address). Unauthenticated, as
        message 1 is: the worst a forged one does is cost a round trip."""
        if not any(cookie):
            raise HandshakeError("the server's cookie is all zeros")
        self.offer = dataclasses.replace(self.offer, cookie=bytes(cookie))
        return ReplyV4(send=[self.start()], cookie=True)

    def _server_hello(self, payload: bytes) -> ReplyV4:
        noise = self._noise
        assert noise is not None
        hello = ServerHello.decode(noise.read_message(payload))
        assert noise.rs is not None
        print_ = fingerprint(noise.rs)
        self.check_server(print_)  # raises to stop before we say who we are
        hello.check_against(self.offer)  # after the pin: only the pinned server is believed
        if hello.features & FEATURE_NEXT_KEY:
            assert noise.e is not None
            shared = dh(noise.e, hello.next_key)
            proof = next_key_proof(shared, noise.rs, hello.next_key)
            if not hmac.compare_digest(proof, hello.next_key_proof):
                raise HandshakeError("the server's next key is not proven")
            self.next_server_fingerprint = fingerprint(hello.next_key)
        self.server_hello = hello
        code = RequestCode.REGISTER if self.register else RequestCode.RECONNECT
        intent = Intent(code, self.name, self.token if self.register else b"").encode()
        size = 48 + len(intent) + rec.TAG_SIZE
        header = intent_header(code, size)
        message = noise.write_message(intent)
        send, recv = noise.split()
        assert send.key is not None and recv.key is not None
        interval = self._rekey_interval
        self._send = rec.RecordCipher(send.key, rekey_interval=interval)
        self._recv = rec.RecordCipher(recv.key, rekey_interval=interval)
        self._noise = self._ephemeral = None  # the ephemeral key is not kept past its use
        self.state = ClientStateV4.AWAITING_WELCOME
        return ReplyV4(send=[header + message], fingerprint=print_)

    def _record(self, code: int, plaintext: bytes) -> ReplyV4:
        state = self.state
        if state is ClientStateV4.AWAITING_WELCOME:
            if code == ResponseCode.REGISTRATION_FAILED:
                raise NameTaken(f"the name {self.name!r} is taken on this server")
            if code == ResponseCode.RECONNECT_DENIED:
                raise UnknownIdentity("the server does not know this key under this name")
            if code in (ResponseCode.REGISTERED, ResponseCode.RECONNECTED):
                if plaintext != self.client_id:
                    raise ResponseError("the server confirmed another client id")
                self.state = ClientStateV4.READY
                if code == ResponseCode.REGISTERED:
                    return ReplyV4(send=[], registered=plaintext)
                return ReplyV4(send=[], logged_in=plaintext)
        if code == PACK_ANSWER and self._packs and state is ClientStateV4.READY:
            return self._pack_answer(plaintext)
        if (self._unsettled or self._unstarted) and state in (
            ClientStateV4.READY,
            ClientStateV4.SENDING,
        ):
            return self._stream_answer(code, plaintext)
        file = self._file
        if (
            state is ClientStateV4.OPENING
            and code == ResponseCode.ACKNOWLEDGED
            and file is not None
        ):
            file_id, start = rec.decode_resume(plaintext)
            if file_id != file.file_id or not 1 <= start <= rec.chunk_count(file.size):
                raise ResponseError("the server's resume point is not in this file")
            self.state = ClientStateV4.SENDING
            return ReplyV4(send=[], start_chunk=start, attempt=file.attempts)
        if state is ClientStateV4.AWAITING_DIGEST and code == ResponseCode.FILE_RECEIVED and file:
            file_id, size, algorithm, digest = rec.decode_received(plaintext)
            if file_id != file.file_id or size != file.size:
                raise ResponseError("1603 is for another file")
            if algorithm != file.digest_algorithm:  # never compared as a mismatch
                raise ResponseError(
                    f"1603 carries a digest of unknown algorithm {algorithm} "
                    f"(asked for {file.digest_algorithm})"
                )
            return self._verdict(file, digest == file.digest)
        if state is ClientStateV4.AWAITING_ACK and code == ResponseCode.ACKNOWLEDGED and file:
            if rec.decode_file_id(plaintext) != file.file_id:
                raise ResponseError("1604 is for another file")
            self.state = ClientStateV4.READY
            if file.gave_up:
                raise AttemptsExhausted(
                    f"{file.name}: the digest differed on {file.attempts} attempts"
                )
            if file.matched:
                self._file = None
                return ReplyV4(send=[], file_verified=True, attempt=file.attempts)
            self._retrying = (file.name, file.attempts)  # the next begin_file counts on
            return ReplyV4(send=[], resend_file=True, attempt=file.attempts)
        raise UnexpectedResponse(f"response {code} while {state.value}")

    def _stream_answer(self, code: int, plaintext: bytes) -> ReplyV4:
        """An answer about a streamed file: its resume point (always chunk 1), or its
        1603 and then its outcome, each for the oldest file still waiting for it."""
        if code == ResponseCode.ACKNOWLEDGED and len(plaintext) == 8 and self._unstarted:
            file = self._unstarted.popleft()
            if file.directory:
                if rec.decode_resume(plaintext) != (file.file_id, 0):
                    raise ResponseError("the server's answer to a folder is not 'made'")
                self._folders -= 1
                return ReplyV4(send=[], file_verified=True, file_id=file.file_id)
            if rec.decode_resume(plaintext) != (file.file_id, 1):
                raise ResponseError("the server's answer to a streamed file is not chunk 1")
            return ReplyV4(send=[], file_id=file.file_id, attempt=file.attempts)
        file = self._unsettled[0]
        if any(waiting is file for waiting in self._unstarted):
            raise UnexpectedResponse(f"response {code} before the file's metadata was answered")
        if code == ResponseCode.FILE_RECEIVED and not file.received:
            file_id, size, algorithm, digest = rec.decode_received(plaintext)
            if file_id != file.file_id or size != file.size or algorithm != file.digest_algorithm:
                raise ResponseError("1603 is not the oldest streamed file's")
            file.received, file.matched = True, digest == file.digest
            return ReplyV4(send=[], file_id=file_id, attempt=file.attempts)
        if code == ResponseCode.ACKNOWLEDGED and file.received:
            file_id, outcome = rec.decode_outcome(plaintext)
            if file_id != file.file_id:
                raise ResponseError("1604 is not the oldest streamed file's")
            if (outcome is rec.Outcome.STORED) != file.matched:
                raise ResponseError("the server's outcome contradicts its digest")
            self._unsettled.popleft()
            if outcome is rec.Outcome.STORED:
                return ReplyV4(send=[], file_verified=True, file_id=file_id, attempt=file.attempts)
            return ReplyV4(send=[], resend_file=True, file_id=file_id, attempt=file.attempts)
        raise UnexpectedResponse(f"response {code} about a streamed file")

    def _pack_answer(self, plaintext: bytes) -> ReplyV4:
        first, outcomes = decode_answer(plaintext)
        count = self._packs.pop(first, None)
        if count is None or count != len(outcomes):
            raise ResponseError("1608 is not the answer to a pack in flight")
        self._packed -= count
        return ReplyV4(send=[], file_id=first, pack_outcomes=outcomes)

    def _verdict(self, file: _File, matched: bool) -> ReplyV4:
        file.matched = matched
        assert self._send is not None
        if matched:
            code = RequestCode.CRC_OK
        elif file.attempts >= MAX_FILE_ATTEMPTS:
            code, file.gave_up = RequestCode.CRC_GIVE_UP, True
        else:
            code = RequestCode.CRC_RETRY
        self.state = ClientStateV4.AWAITING_ACK
        frame = rec.request_record(
            self._send, self.client_id, code, rec.encode_file_id(file.file_id)
        )
        return ReplyV4(send=[frame], digest_ok=matched, gave_up=file.gave_up, attempt=file.attempts)

    # --- files ------------------------------------------------------------------------

    def begin_file(
        self,
        name: str,
        size: int,
        upload_id: bytes,
        digest_algorithm: int = DigestAlgorithm.BLAKE3,
    ) -> bytes:
        """The metadata record of an attempt (each a new file id; a resume keeps the
        upload id, a retry after a digest mismatch takes a new one). The session counts
        the attempts: the one after a ``resend_file`` reply for the same name is the
        next, any other is a first. ``name`` is a relative path, sent in NFC (raises
        ``paths.BadPath``, a ``ValueError``, for one version 4 refuses)."""
        if self.state is not ClientStateV4.READY or self._send is None:
            raise RuntimeError(f"cannot send a file while {self.state.value}")
        name = paths.normalise(name)
        hello = self.server_hello
        if hello is not None and size > hello.max_file_size:
            raise ValueError(f"the server accepts files up to {hello.max_file_size} bytes")
        self._file_id += 1
        retried, self._retrying = self._retrying, None
        attempt = retried[1] + 1 if retried is not None and retried[0] == name else 1
        self._file = _File(self._file_id, name, size, attempt, digest_algorithm)
        self.state = ClientStateV4.OPENING
        meta = rec.FileMeta(self._file_id, size, upload_id, name, digest_algorithm).encode()
        return rec.request_record(self._send, self.client_id, RequestCode.SEND_FILE, meta)

    def begin_stream_file(
        self,
        name: str,
        size: int,
        upload_id: bytes,
        attempt: int = 1,
        digest_algorithm: int = DigestAlgorithm.BLAKE3,
    ) -> bytes:
        """STREAM: the metadata of a fresh upload, its data to follow at once
        (``chunk_record_pieces``, then ``commit_if``). At most ``stream_window`` files
        may be unanswered; the caller counts ``attempt`` (after a differing digest)."""
        if not self.stream_window:
            raise RuntimeError("the server did not select STREAM")
        if self.state is not ClientStateV4.READY or self._send is None:
            raise RuntimeError(f"cannot send a file while {self.state.value}")
        if self.unanswered >= self.stream_window:
            raise RuntimeError("the window is full: read answers first")
        name = paths.normalise(name)
        hello = self.server_hello
        if hello is not None and size > hello.max_file_size:
            raise ValueError(f"the server accepts files up to {hello.max_file_size} bytes")
        self._file_id += 1
        file = _File(self._file_id, name, size, attempt, digest_algorithm, stream=True)
        self._file = file
        self._unstarted.append(file)
        self._unsettled.append(file)
        self.state = ClientStateV4.SENDING
        meta = rec.FileMeta(
            self._file_id, size, upload_id, name, digest_algorithm, stream=True
        ).encode()
        return rec.request_record(self._send, self.client_id, RequestCode.SEND_FILE, meta)

    def begin_folder(self, name: str) -> bytes:
        """STREAM: make the empty folder ``name`` (a relative path) on the server; its
        answer comes in the order of the metadata answers, and counts in the window."""
        if not self.stream_window:
            raise RuntimeError("the server did not select STREAM")
        if self.state is not ClientStateV4.READY or self._send is None:
            raise RuntimeError(f"cannot send a folder while {self.state.value}")
        if self.unanswered >= self.stream_window:
            raise RuntimeError("the window is full: read answers first")
        name = paths.normalise(name)
        self._file_id += 1
        self._unstarted.append(_File(self._file_id, name, 0, 1, stream=True, directory=True))
        self._folders += 1
        meta = rec.FileMeta(self._file_id, 0, bytes(16), name, directory=True).encode()
        return rec.request_record(self._send, self.client_id, RequestCode.SEND_FILE, meta)

    def seal_pack(
        self,
        files: Sequence[tuple[bytes, bytes, bytes | bytearray | memoryview]],
        *,
        sync_now: bool,
        digest_algorithm: int = DigestAlgorithm.BLAKE3,
    ) -> tuple[int, list[bytes | memoryview]]:
        """PACK: one 904 of whole files, each (name in UTF-8, checked and in NFC as
        ``paths.normalise`` gives it; digest; data); its first file id and its record.
        The files count in the window until their 1608. ``sync_now``: the client reads
        answers next."""
        if not self.pack_files:
            raise RuntimeError("the server did not select PACK")
        if self.state is not ClientStateV4.READY or self._send is None:
            raise RuntimeError(f"cannot send a pack while {self.state.value}")
        if self.unanswered + len(files) > self.stream_window:
            raise RuntimeError("the window is full: read answers first")
        first = self._file_id + 1
        plaintext = encode_pack(first, digest_algorithm, files, sync_now=sync_now)
        self._file_id += len(files)
        self._packs[first] = len(files)
        self._packed += len(files)
        pieces = rec.request_record_pieces(self._send, self.client_id, PACK, plaintext)
        return first, list(pieces)

    def commit_if(self, digest: bytes, *, sync_now: bool) -> bytes:
        """STREAM: 903 after the file's FINAL chunk. ``sync_now``: the client reads
        answers next (nothing more to send, or the window is full)."""
        file = self._file
        assert file is not None and file.stream and self._send is not None
        assert self.state is ClientStateV4.AWAITING_DIGEST
        file.digest = digest
        self._file = None
        self.state = ClientStateV4.READY
        commit = rec.CommitIf(file.file_id, digest, file.digest_algorithm, sync_now)
        return rec.request_record(self._send, self.client_id, rec.COMMIT_IF, commit.encode())

    def chunk_record(self, index: int, data: bytes) -> bytes:
        room = bytearray(rec.CHUNK_PREFIX_SIZE) + data
        return b"".join(self.chunk_record_pieces(index, room))

    def chunk_record_pieces(
        self,
        index: int,
        room: bytearray | memoryview,
        sealed: bytearray | memoryview | None = None,
    ) -> list[bytes | memoryview]:
        """Chunk ``index`` as header and sealed payload. ``room`` is the chunk's data
        after ``CHUNK_PREFIX_SIZE`` spare bytes, which receive the prefix: a sender that
        reads each chunk into the same buffer at that offset copies nothing. With
        ``sealed`` (room for ``len(room) + TAG_SIZE`` bytes) the payload is sealed into
        it, and the pieces are valid until it is used again."""
        file = self._file
        assert file is not None and self._send is not None and self.state is ClientStateV4.SENDING
        final = index == rec.chunk_count(file.size)
        room[: rec.CHUNK_PREFIX_SIZE] = rec.encode_chunk_prefix(file.file_id, index, final)
        code = RequestCode.SEND_FILE
        pieces: list[bytes | memoryview]
        if sealed is None:
            pieces = list(rec.request_record_pieces(self._send, self.client_id, code, room))
        else:
            pieces = rec.request_record_into(self._send, self.client_id, code, room, sealed)
        if final:
            self.state = ClientStateV4.AWAITING_DIGEST
        return pieces

    def file_hashed(self, digest: bytes) -> None:
        """The BLAKE3 digest of the whole file as sent (resumed prefix included)."""
        assert self._file is not None
        self._file.digest = digest

    def abort_file(self) -> bytes:
        """902 for an upload in progress: the server deletes what it has."""
        file = self._file
        assert file is not None and self._send is not None
        self.state = ClientStateV4.AWAITING_ACK
        file.gave_up = True
        code = RequestCode.CRC_GIVE_UP
        return rec.request_record(
            self._send, self.client_id, code, rec.encode_file_id(file.file_id)
        )

    @property
    def file_attempts(self) -> int:
        return self._file.attempts if self._file else 0


class UnknownIdentity(ResponseError):
    """1606: the server knows neither this key nor this name together."""

    reason = "unknown_identity"


@dataclass
class _File:
    file_id: int
    name: str
    size: int
    attempts: int
    digest_algorithm: int = DigestAlgorithm.BLAKE3
    digest: bytes = b""
    matched: bool = False
    gave_up: bool = False
    stream: bool = False
    received: bool = False  # STREAM: its 1603 came
    directory: bool = False  # an empty folder (FLAG_DIRECTORY): no data
