"""The version-4 server's transition table (protocol/eft_protocol/v4/server_table.py)
and its effects (protocol/eft_protocol/v4/server_effects.py), on their own: every
state is reachable and can close, CLOSED accepts nothing, what each state accepts is
what the table says, and a response is sealed once, only when it is first read."""

from __future__ import annotations

from eft_protocol.codes import RequestCode
from eft_protocol.v4.pack import PACK
from eft_protocol.v4.records import COMMIT_IF
from eft_protocol.v4.server_effects import SendFrame
from eft_protocol.v4.server_table import ALLOWED, TRANSITIONS, ServerStateV4, Step

S = ServerStateV4


def test_every_state_is_reachable_from_the_hello() -> None:
    reached, frontier = {S.AWAITING_HELLO}, [S.AWAITING_HELLO]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(ServerStateV4)


def test_every_state_closes_and_closed_is_the_end() -> None:
    assert all(TRANSITIONS[(state, Step.CLOSE)] is S.CLOSED for state in ServerStateV4)
    assert [step for (state, step) in TRANSITIONS if state is S.CLOSED] == [Step.CLOSE]
    assert ALLOWED[S.CLOSED] == frozenset()


def test_what_each_state_accepts() -> None:
    assert ALLOWED[S.AWAITING_HELLO] == {RequestCode.SEND_PUBLIC_KEY}
    assert ALLOWED[S.AWAITING_INTENT] == {RequestCode.REGISTER, RequestCode.RECONNECT}
    assert ALLOWED[S.IDLE] == {RequestCode.SEND_FILE, PACK}  # a pack only between files
    assert ALLOWED[S.UPLOADING] == {RequestCode.SEND_FILE, RequestCode.CRC_GIVE_UP}
    assert ALLOWED[S.AWAITING_VERDICT] == {
        RequestCode.CRC_OK,
        RequestCode.CRC_RETRY,
        RequestCode.CRC_GIVE_UP,
    }
    assert ALLOWED[S.DRAINING] == {RequestCode.SEND_FILE, COMMIT_IF}
    assert ALLOWED[S.AWAITING_COMMIT] == {COMMIT_IF}
    # Waiting for storage, the session reads nothing.
    assert ALLOWED[S.OPENING] == ALLOWED[S.FINISHING] == ALLOWED[S.STORING_PACK] == frozenset()


def test_storage_answers_have_no_request_code() -> None:
    from_storage = {step for step in Step if step.code is None}
    assert from_storage == {
        Step.STREAM_COMPLETE,
        Step.STREAM_UNREADY,
        Step.UPLOAD_READY,
        Step.UPLOAD_REFUSED,
        Step.UPLOAD_COMPLETE,
        Step.PACK_STORED,
        Step.CLOSE,
    }


def test_a_response_is_sealed_once_when_first_read() -> None:
    sealed: list[int] = []

    def seal() -> bytes:
        sealed.append(1)
        return b"sealed"

    frame = SendFrame(None, 1603, seal)
    assert sealed == [] and "sealed=False" in repr(frame)
    assert frame.frame == b"sealed" and frame.frame == b"sealed"
    assert sealed == [1], "one nonce, used once"
    assert "sealed=True" in repr(frame) and frame.code == 1603
    assert SendFrame(b"plain", 1600).frame == b"plain"
