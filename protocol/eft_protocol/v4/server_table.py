"""The version-4 server's states and its transition table: every state change of
``ServerSessionV4`` is a row here (its ``_advance`` is the only assignment)."""

from __future__ import annotations

import enum

from ..codes import RequestCode
from .pack import PACK
from .records import COMMIT_IF


class ServerStateV4(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    AWAITING_INTENT = "awaiting_intent"
    IDLE = "idle"
    OPENING = "opening"  # metadata received; storage is finding the partial upload
    UPLOADING = "uploading"
    FINISHING = "finishing"  # FINAL received; storage is hashing and syncing
    AWAITING_VERDICT = "awaiting_verdict"
    #: STREAM: a streamed file's data is in and hashed; its 903 comes next.
    AWAITING_COMMIT = "awaiting_commit"
    #: STREAM: a streamed file was refused (1607) before its data: its data records and
    #: its 903, already on their way, are read and dropped.
    DRAINING = "draining"
    #: PACK: a 904's files are being written; ``pack_stored`` says which were refused.
    STORING_PACK = "storing_pack"
    CLOSED = "closed"


class Step(enum.Enum):
    """What a request (or storage's answer) turned out to be; with the state it picks
    the next state. The request code is None for what storage reports back."""

    HELLO = (RequestCode.SEND_PUBLIC_KEY, "hello")
    WELCOMED = (RequestCode.REGISTER, "welcomed")  # 1600, or 1601 for a login (827)
    LOGGED_IN = (RequestCode.RECONNECT, "logged_in")
    METADATA = (RequestCode.SEND_FILE, "metadata")
    METADATA_REFUSED = (RequestCode.SEND_FILE, "metadata_refused")  # 1607, stays open
    CHUNK = (RequestCode.SEND_FILE, "chunk")
    FINAL_CHUNK = (RequestCode.SEND_FILE, "final_chunk")
    VERIFIED = (RequestCode.CRC_OK, "verified")
    RETRY = (RequestCode.CRC_RETRY, "retry")
    GAVE_UP = (RequestCode.CRC_GIVE_UP, "gave_up")  # after 1603, or abandoning an upload
    STREAM_REFUSED = (RequestCode.SEND_FILE, "stream_refused")  # 1607; its data follows
    DRAIN_CHUNK = (RequestCode.SEND_FILE, "drain_chunk")
    DRAIN_END = (COMMIT_IF, "drain_end")  # the refused file's 903: dropped
    COMMITTED_IF = (COMMIT_IF, "commit_if")  # 903: staged for the group, or discarded
    PACK = (PACK, "pack")  # 904: its files checked, handed to storage
    PACK_STORED = (None, "pack_stored")  # staged for the group; the 1608 waits for it
    STREAM_COMPLETE = (None, "stream_complete")  # hashed; the 1603 waits for the group
    STREAM_UNREADY = (None, "stream_unready")  # refused before the data; its data follows
    UPLOAD_READY = (None, "upload_ready")
    UPLOAD_REFUSED = (None, "upload_refused")  # no space, over quota, a name in the way
    UPLOAD_COMPLETE = (None, "upload_complete")
    CLOSE = (None, "close")  # any refusal that ends the connection, or its loss

    @property
    def code(self) -> int | None:
        code: int | None = self.value[0]
        return code


_S, _T = ServerStateV4, Step
#: Every state change of a version-4 server connection, in one place.
TRANSITIONS: dict[tuple[ServerStateV4, Step], ServerStateV4] = {
    (_S.AWAITING_HELLO, _T.HELLO): _S.AWAITING_INTENT,
    (_S.AWAITING_INTENT, _T.WELCOMED): _S.IDLE,
    (_S.AWAITING_INTENT, _T.LOGGED_IN): _S.IDLE,
    (_S.IDLE, _T.METADATA): _S.OPENING,
    (_S.IDLE, _T.METADATA_REFUSED): _S.IDLE,
    (_S.OPENING, _T.UPLOAD_READY): _S.UPLOADING,
    (_S.OPENING, _T.UPLOAD_REFUSED): _S.IDLE,  # 1607 before any data; the session goes on
    (_S.UPLOADING, _T.CHUNK): _S.UPLOADING,
    (_S.UPLOADING, _T.FINAL_CHUNK): _S.FINISHING,
    (_S.UPLOADING, _T.GAVE_UP): _S.IDLE,  # 902 midway: the client abandons the upload
    (_S.FINISHING, _T.UPLOAD_COMPLETE): _S.AWAITING_VERDICT,
    (_S.AWAITING_VERDICT, _T.VERIFIED): _S.IDLE,
    (_S.AWAITING_VERDICT, _T.RETRY): _S.IDLE,  # the retry is a new file id
    (_S.AWAITING_VERDICT, _T.GAVE_UP): _S.IDLE,
    (_S.IDLE, _T.STREAM_REFUSED): _S.DRAINING,
    (_S.OPENING, _T.STREAM_UNREADY): _S.DRAINING,
    (_S.DRAINING, _T.DRAIN_CHUNK): _S.DRAINING,
    (_S.DRAINING, _T.DRAIN_END): _S.IDLE,
    (_S.FINISHING, _T.STREAM_COMPLETE): _S.AWAITING_COMMIT,
    (_S.AWAITING_COMMIT, _T.COMMITTED_IF): _S.IDLE,
    (_S.IDLE, _T.PACK): _S.STORING_PACK,
    (_S.STORING_PACK, _T.PACK_STORED): _S.IDLE,
    **{(state, _T.CLOSE): _S.CLOSED for state in ServerStateV4},
}
del _S, _T

#: Which request codes each state accepts, derived from the table; anything else closes.
ALLOWED: dict[ServerStateV4, frozenset[int]] = {
    state: frozenset(step.code for (s, step) in TRANSITIONS if s is state and step.code is not None)
    for state in ServerStateV4
}

_VERDICTS: dict[int, Step] = {
    RequestCode.CRC_OK: Step.VERIFIED,
    RequestCode.CRC_RETRY: Step.RETRY,
    RequestCode.CRC_GIVE_UP: Step.GAVE_UP,
}

#: States in which the session waits for storage's answer before reading on.
_WAITING_FOR_STORAGE = (
    ServerStateV4.OPENING,
    ServerStateV4.FINISHING,
    ServerStateV4.STORING_PACK,
    ServerStateV4.CLOSED,
)
