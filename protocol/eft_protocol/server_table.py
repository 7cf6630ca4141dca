"""The version-3 server's effects, states and transition table: what
``server_session.ServerSession`` returns and the one place its state changes are listed.

Apart from the session so that the table reads on its own, as h11's ``_state.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import errors
from .codes import MAX_FILE_ATTEMPTS, MAX_FILE_SIZE, RequestCode, ResponseCode
from .notices import Notice
from .wire import Response, ServerError

# --- effects: what the driver must do ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    response: Response


@dataclass(frozen=True, slots=True)
class Rejected:
    """Answer ``error.response_code``; count and log the error; close if it is fatal."""

    error: errors.ProtocolError
    request_code: int | None

    @property
    def response(self) -> Response:
        # Every version-3 error maps to 1607, the only error response without a payload.
        assert self.error.response_code is ResponseCode.SERVER_ERROR
        return ServerError()


@dataclass(frozen=True, slots=True)
class BeginFile:
    """Open a fresh temporary file for an upload of ``storage_name``."""

    client_id: bytes
    storage_name: str


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Append ``data`` to the temporary file.

    ``data`` may be a view of the session's plaintext buffer, which the next ``handle``
    call overwrites (on any session sharing that buffer): write it, or copy it, first.
    """

    data: bytes | memoryview = field(repr=False)


@dataclass(frozen=True, slots=True)
class DiscardFile:
    """Delete the temporary file, if any. The stored version is untouched."""


@dataclass(frozen=True, slots=True)
class CommitFile:
    """Make the temporary file durable and move it to its final name."""

    client_id: bytes
    storage_name: str
    size: int
    cksum: int


Effect = Send | Rejected | BeginFile | WriteFile | DiscardFile | CommitFile | Notice


# --- states and the transition table -----------------------------------------------


class State(enum.Enum):
    IDLE = "idle"  # no identity yet (also after 1601 or 1606)
    REGISTERED = "registered"  # 1600 sent; waiting for the public key
    READY = "ready"  # has an AES key; a file may start
    RECEIVING = "receiving"  # inside one attempt at a file
    AWAITING_VERDICT = "awaiting_verdict"  # 1603 sent; waiting for 900, 901 or 902
    AWAITING_RESEND = "awaiting_resend"  # 901 received; the same file comes again


class Outcome(enum.Enum):
    """What a request turned out to be; with the state it picks the next state."""

    REGISTERED = (RequestCode.REGISTER, "registered")
    NAME_TAKEN = (RequestCode.REGISTER, "name_taken")
    KEY_ACCEPTED = (RequestCode.SEND_PUBLIC_KEY, "key_accepted")
    RECONNECTED = (RequestCode.RECONNECT, "reconnected")
    RECONNECT_DENIED = (RequestCode.RECONNECT, "reconnect_denied")
    PACKET = (RequestCode.SEND_FILE, "packet")
    FILE_COMPLETE = (RequestCode.SEND_FILE, "file_complete")
    ATTEMPT_FAILED = (RequestCode.SEND_FILE, "attempt_failed")
    VERIFIED = (RequestCode.CRC_OK, "verified")
    RETRY = (RequestCode.CRC_RETRY, "retry")
    GAVE_UP = (RequestCode.CRC_GIVE_UP, "gave_up")

    @property
    def code(self) -> RequestCode:
        code: RequestCode = self.value[0]
        return code


_S, _O = State, Outcome
TRANSITIONS: dict[tuple[State, Outcome], State] = {
    (_S.IDLE, _O.REGISTERED): _S.REGISTERED,
    (_S.IDLE, _O.NAME_TAKEN): _S.IDLE,
    (_S.IDLE, _O.RECONNECTED): _S.READY,
    (_S.IDLE, _O.RECONNECT_DENIED): _S.IDLE,
    # 826 only on the connection that registered: an id seen on the wire proves nothing
    # (docs/SECURITY.md, EFT-03).
    (_S.REGISTERED, _O.KEY_ACCEPTED): _S.READY,
    (_S.READY, _O.PACKET): _S.RECEIVING,
    (_S.READY, _O.FILE_COMPLETE): _S.AWAITING_VERDICT,
    (_S.READY, _O.ATTEMPT_FAILED): _S.READY,
    (_S.RECEIVING, _O.PACKET): _S.RECEIVING,
    (_S.RECEIVING, _O.FILE_COMPLETE): _S.AWAITING_VERDICT,
    (_S.RECEIVING, _O.ATTEMPT_FAILED): _S.READY,
    (_S.AWAITING_VERDICT, _O.VERIFIED): _S.READY,
    (_S.AWAITING_VERDICT, _O.RETRY): _S.AWAITING_RESEND,
    (_S.AWAITING_VERDICT, _O.GAVE_UP): _S.READY,
    (_S.AWAITING_RESEND, _O.PACKET): _S.RECEIVING,
    (_S.AWAITING_RESEND, _O.FILE_COMPLETE): _S.AWAITING_VERDICT,
    (_S.AWAITING_RESEND, _O.ATTEMPT_FAILED): _S.READY,
    # Section 8: some clients send a 4th 901 before 902, or 902 right after a 901.
    (_S.AWAITING_RESEND, _O.RETRY): _S.AWAITING_RESEND,
    (_S.AWAITING_RESEND, _O.GAVE_UP): _S.READY,
}
del _S, _O

#: Which request codes each state accepts at all, derived from the table.
ALLOWED: dict[State, frozenset[RequestCode]] = {
    state: frozenset(outcome.code for (s, outcome) in TRANSITIONS if s is state) for state in State
}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_file_size: int = MAX_FILE_SIZE
    #: Attempts at one file (the spec's client makes 4: the first and three retries).
    max_attempts: int = MAX_FILE_ATTEMPTS
    #: A name registered (1600) but never given a key (826) is free again after this:
    #: the client's connection broke in between, and it holds no me.info to reconnect.
    unfinished_registration: float = 60.0
