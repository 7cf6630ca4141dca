"""The client's side of a session, as a state machine with no I/O.

The driver sends what the session returns and feeds it each response. Files go through
``begin_file``: the driver reads the file in pieces and passes them to the returned
``FileSender``, which encrypts, checksums and cuts them into 828 frames as they come, so
a file is never held whole. Retry rules (spec section 4) live here:

* CRC differs: 901 and send the file again, up to 3 times; the 4th time 902, then fail.
* 1607: send the same request again, up to 3 more times; then fail.
* Some servers answer 901 with 1604 and some do not; a 1604 that arrives while we wait
  for the next 1603 is the answer to our 901 and is skipped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from Crypto.PublicKey import RSA

from . import crypto, errors
from .codes import (
    DEFAULT_PACKET_SIZE,
    MAX_FILE_ATTEMPTS,
    MAX_FILE_SIZE,
    ResponseCode,
)
from .file_sender import FileSender
from .wire import (
    ZERO_CLIENT_ID,
    Acknowledged,
    CrcGiveUpRequest,
    CrcOkRequest,
    CrcRetryRequest,
    FileReceived,
    PublicKeyAccepted,
    PublicKeyRequest,
    ReconnectDenied,
    Reconnected,
    ReconnectRequest,
    Registered,
    RegisterRequest,
    Response,
)

#: Times one request is sent when the server keeps answering 1607: once and 3 more.
MAX_REQUEST_TRIES = 4


@dataclass(frozen=True)
class Identity:
    """What ``me.info`` holds."""

    name: str
    client_id: bytes
    private_key: RSA.RsaKey = field(repr=False)


class State(enum.Enum):
    START = "start"
    AWAITING_REGISTRATION = "awaiting_registration"  # 825 sent
    AWAITING_KEY = "awaiting_key"  # 826 sent
    AWAITING_RECONNECT = "awaiting_reconnect"  # 827 sent
    READY = "ready"  # have an AES key
    SENDING = "sending"  # the driver is streaming a file's packets
    AWAITING_CRC = "awaiting_crc"  # all packets sent; waiting for 1603
    AWAITING_ACK = "awaiting_ack"  # 900 or 902 sent; waiting for 1604


class Outcome(enum.Enum):
    REGISTERED = "registered"
    KEY_RECEIVED = "key_received"
    RECONNECTED = "reconnected"
    RECONNECT_DENIED = "reconnect_denied"
    FILE_STARTED = "file_started"
    FILE_SENT = "file_sent"
    CRC_OK = "crc_ok"
    CRC_RETRY = "crc_retry"
    CRC_GIVE_UP = "crc_give_up"
    RETRY_ACKNOWLEDGED = "retry_acknowledged"  # a 1604 answering our 901
    DONE = "done"
    RESEND_FILE = "resend_file"  # 1607 to a file


_S, _O = State, Outcome
TRANSITIONS: dict[tuple[State, Outcome], State] = {
    (_S.START, _O.REGISTERED): _S.AWAITING_REGISTRATION,
    (_S.START, _O.RECONNECTED): _S.AWAITING_RECONNECT,
    (_S.AWAITING_REGISTRATION, _O.REGISTERED): _S.AWAITING_KEY,
    (_S.AWAITING_KEY, _O.KEY_RECEIVED): _S.READY,
    (_S.AWAITING_RECONNECT, _O.RECONNECTED): _S.READY,
    (_S.AWAITING_RECONNECT, _O.RECONNECT_DENIED): _S.AWAITING_REGISTRATION,
    (_S.READY, _O.FILE_STARTED): _S.SENDING,
    (_S.SENDING, _O.FILE_SENT): _S.AWAITING_CRC,
    (_S.AWAITING_CRC, _O.CRC_OK): _S.AWAITING_ACK,
    (_S.AWAITING_CRC, _O.CRC_GIVE_UP): _S.AWAITING_ACK,
    (_S.AWAITING_CRC, _O.CRC_RETRY): _S.READY,
    (_S.AWAITING_CRC, _O.RESEND_FILE): _S.READY,
    (_S.AWAITING_CRC, _O.RETRY_ACKNOWLEDGED): _S.AWAITING_CRC,
    (_S.AWAITING_ACK, _O.DONE): _S.READY,
}
del _S, _O

#: What each waiting state expects to hear; 1607 is accepted everywhere (it is retried).
EXPECTED: dict[State, frozenset[ResponseCode]] = {
    State.AWAITING_REGISTRATION: frozenset(
        {ResponseCode.REGISTERED, ResponseCode.REGISTRATION_FAILED}
    ),
    State.AWAITING_KEY: frozenset({ResponseCode.PUBLIC_KEY_ACCEPTED}),
    State.AWAITING_RECONNECT: frozenset({ResponseCode.RECONNECTED, ResponseCode.RECONNECT_DENIED}),
    State.AWAITING_CRC: frozenset({ResponseCode.FILE_RECEIVED, ResponseCode.ACKNOWLEDGED}),
    State.AWAITING_ACK: frozenset({ResponseCode.ACKNOWLEDGED}),
}


@dataclass(frozen=True)
class Reply:
    """What the session wants next, after a response."""

    #: Frames to send now (possibly none).
    send: list[bytes] = field(default_factory=list)
    #: A new identity to save (me.info, priv.key) before going on.
    new_identity: Identity | None = None
    #: The current file must be sent again: call ``begin_file`` once more.
    resend_file: bool = False
    #: The current file is verified: the server confirmed its CRC.
    file_verified: bool = False
    #: The server said "server error" and the last request is being repeated; the
    #: number of this repetition (1 to 3).
    server_error_retry: int = 0
    #: The CRC differed on this attempt (the file goes again, or 902 follows).
    crc_mismatch: bool = False
    #: The reconnect was approved (1605) or denied (1606, registering instead).
    reconnected: bool = False
    reconnect_denied: bool = False
    #: Which attempt at the current file this reply is about.
    attempt: int = 0

    @property
    def server_error(self) -> bool:
        return self.server_error_retry > 0


class ClientSession:
    def __init__(
        self,
        name: str,
        identity: Identity | None = None,
        *,
        randfunc: crypto.RandFunc | None = None,
        new_key: Callable[[], RSA.RsaKey] | None = None,
        token: bytes = b"",
    ) -> None:
        self.name = name
        #: The operator's invitation token, after the name's NUL in each 825 only.
        self.token = token
        self.identity = identity
        self.state = State.START
        self._randfunc = randfunc
        # Load generators share one pre-made key: RSA-1024 generation costs ~100 ms.
        self._new_key = new_key or (lambda: crypto.generate_rsa_key(self._randfunc))
        self._aes_key: bytes | None = None
        self._last_request: bytes | None = None
        self._tries = 0  # sends of the last request
        self._file: _FileState | None = None
        self._unanswered_retries = 0  # 901s a 1604 may still come for

    @property
    def client_id(self) -> bytes:
        return self.identity.client_id if self.identity else ZERO_CLIENT_ID

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def _advance(self, outcome: Outcome) -> None:
        try:
            self.state = TRANSITIONS[(self.state, outcome)]
        except KeyError:
            raise RuntimeError(f"{outcome.value} is not possible in {self.state.value}") from None

    def _request(self, frame: bytes) -> list[bytes]:
        self._last_request, self._tries = frame, 1
        return [frame]

    # --- starting ---------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """The first request: reconnect if we have an identity, else register."""
        if self.identity is not None and self.identity.name == self.name:
            self._advance(Outcome.RECONNECTED)
            return self._request(ReconnectRequest(self.client_id, self.name).encode())
        self._advance(Outcome.REGISTERED)
        return self._request(RegisterRequest(ZERO_CLIENT_ID, self.name, self.token).encode())

    # --- responses --------------------------------------------------------------------

    def receive(self, response: Response) -> Reply:
        expected = EXPECTED.get(self.state, frozenset())
        if response.code is ResponseCode.SERVER_ERROR and self.state in EXPECTED:
            return self._server_error()
        if response.code not in expected:
            raise errors.UnexpectedResponse(
                f"response {int(response.code)} while {self.state.value}"
            )
        if isinstance(response, Registered):
            return self._registered(response)
        if response.code is ResponseCode.REGISTRATION_FAILED:
            raise errors.NameTaken(f"the server refused the name {self.name!r}")
        if isinstance(response, PublicKeyAccepted):
            return self._key_received(response.client_id, response.encrypted_aes_key)
        if isinstance(response, Reconnected):
            self._take_aes_key(response.client_id, response.encrypted_aes_key)
            self._advance(Outcome.RECONNECTED)
            return Reply(reconnected=True)
        if isinstance(response, ReconnectDenied):
            self.identity = None
            self._advance(Outcome.RECONNECT_DENIED)
            frame = RegisterRequest(ZERO_CLIENT_ID, self.name, self.token).encode()
            return Reply(send=self._request(frame), reconnect_denied=True)
        if isinstance(response, FileReceived):
            return self._file_received(response)
        assert isinstance(response, Acknowledged)
        return self._acknowledged()

    def _registered(self, response: Registered) -> Reply:
        if response.client_id == ZERO_CLIENT_ID:
            raise errors.ResponseError("the server assigned the all-zero client id")
        key = self._new_key()
        self.identity = Identity(self.name, response.client_id, key)
        self._advance(Outcome.REGISTERED)
        frame = PublicKeyRequest(response.client_id, self.name, crypto.public_key_der(key)).encode()
        return Reply(send=self._request(frame), new_identity=self.identity)

    def _key_received(self, client_id: bytes, wrapped: bytes) -> Reply:
        self._take_aes_key(client_id, wrapped)
        self._advance(Outcome.KEY_RECEIVED)
        return Reply()

    def _take_aes_key(self, client_id: bytes, wrapped: bytes) -> None:
        assert self.identity is not None
        if client_id != self.identity.client_id:
            raise errors.ResponseError("the server answered for another client id")
        self._aes_key = crypto.unwrap_aes_key(self.identity.private_key, wrapped)

    def _server_error(self) -> Reply:
        if self._tries >= MAX_REQUEST_TRIES:
            raise errors.ServerKeptFailing(
                f"the server answered 'server error' {self._tries} times in a row"
            )
        retry = self._tries
        self._tries += 1
        if self.state is State.AWAITING_CRC:
            assert self._file is not None
            self._file.server_errors += 1
            self._file.resending_after_error = True
            self._advance(Outcome.RESEND_FILE)
            return Reply(resend_file=True, server_error_retry=retry, attempt=self._file.attempts)
        assert self._last_request is not None
        return Reply(send=[self._last_request], server_error_retry=retry)

    # --- files ------------------------------------------------------------------------

    def begin_file(
        self, file_name: str, size: int, packet_size: int = DEFAULT_PACKET_SIZE
    ) -> FileSender:
        """Start an attempt at a file; feed the returned sender the file's bytes."""
        if self.state is not State.READY or self._aes_key is None:
            raise RuntimeError(f"cannot send a file while {self.state.value}")
        if size > MAX_FILE_SIZE:
            raise ValueError(f"{size} bytes is more than version 3 can carry (under 4 GiB)")
        if self._file is None or self._file.name != file_name:
            self._file = _FileState(file_name)
        if self._file.resending_after_error:
            self._file.resending_after_error = False  # a 1607 retry is not a CRC attempt
        else:
            self._file.attempts += 1
        self._advance(Outcome.FILE_STARTED)
        return FileSender(self, file_name, size, packet_size, self._aes_key)

    def _file_sent(self, checksum: int) -> None:
        assert self._file is not None
        self._file.cksum = checksum
        self._advance(Outcome.FILE_SENT)
        # A resent file is a fresh request for the 1607 rule only if it followed a 1607.
        if self._file.server_errors == 0:
            self._tries = 1
        self._last_request = None

    @property
    def file_attempts(self) -> int:
        return self._file.attempts if self._file else 0

    def _file_received(self, response: FileReceived) -> Reply:
        file = self._file
        assert file is not None and file.cksum is not None
        file.server_errors = 0
        name = file.name
        attempt = file.attempts
        if response.cksum == file.cksum:
            self._advance(Outcome.CRC_OK)
            file.gave_up = False
            frame = CrcOkRequest(self.client_id, name).encode()
            return Reply(send=self._request(frame), attempt=attempt)
        if attempt >= MAX_FILE_ATTEMPTS:
            self._advance(Outcome.CRC_GIVE_UP)
            file.gave_up = True
            frame = CrcGiveUpRequest(self.client_id, name).encode()
            return Reply(send=self._request(frame), crc_mismatch=True, attempt=attempt)
        self._advance(Outcome.CRC_RETRY)
        self._unanswered_retries += 1
        self._last_request, self._tries = None, 0
        frame = CrcRetryRequest(self.client_id, name).encode()
        return Reply(send=[frame], resend_file=True, crc_mismatch=True, attempt=attempt)

    def _acknowledged(self) -> Reply:
        if self.state is State.AWAITING_CRC:
            if self._unanswered_retries == 0:
                raise errors.UnexpectedResponse("1604 while waiting for the file's CRC")
            self._unanswered_retries -= 1
            self._advance(Outcome.RETRY_ACKNOWLEDGED)
            return Reply()
        file = self._file
        assert file is not None
        self._advance(Outcome.DONE)
        self._file = None
        self._unanswered_retries = 0
        if file.gave_up:
            raise errors.AttemptsExhausted(
                f"{file.name}: the CRC differed on all {file.attempts} attempts"
            )
        return Reply(file_verified=True, attempt=file.attempts)


@dataclass
class _FileState:
    name: str
    attempts: int = 0
    server_errors: int = 0
    cksum: int | None = None
    gave_up: bool = False
    resending_after_error: bool = False
