"""``ServerSessionV4`` one effect list at a time: what each step returns, exactly.

The vectors and the in-memory links check that a client and the server agree; these
check what the server tells its driver and its operator: the notices and their fields
(the log lines, the metrics' labels), the close reasons, the detail of a silent close,
and the answers' codes and payloads, so that a changed word or field fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from eft_protocol.codes import ResponseCode
from eft_protocol.errors import ProtocolError
from eft_protocol.noise import NoiseError
from eft_protocol.notices import (
    ClosedSilently,
    CookieSent,
    HandshakeRateLimited,
    HelloAnswered,
    NameRefused,
    ReconnectRefused,
    RequestRefused,
    StorageFailure,
    Transfer,
)
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.admission import Admission
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import (
    COOKIE_REPLY_SIZE,
    HandshakeError,
    Offer,
    cookie_reply_header,
    revision_1_hello_header,
)
from tests.v4.test_stream import _handshaken
from tests.v4.test_v4_vectors import Scenario

from .test_cookies import _pair

CLIENT = "alice"


def _plain(effects: list[Any]) -> list[Any]:
    """Effects with each answer as (its code, its plaintext, opened by ``opener``)."""
    return [("send", e.code) if isinstance(e, v4s.SendFrame) else e for e in effects]


def _closed(reason: str, detail: str) -> list[Any]:
    return [ClosedSilently({"reason": reason, "detail": detail}), v4s.Close(reason)]


class Peer:
    """A welcomed client's record layer, sending records by hand and opening answers."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.server = scenario.server
        client = scenario.client
        assert client._send is not None and client._recv is not None
        self.send_cipher, self.recv_cipher = client._send, client._recv
        self.client_id = client.client_id

    def send(self, code: int, plaintext: bytes, now: float = 10.0, check: bool = True) -> list[Any]:
        """``check``: through ``payload_size`` first, as the driver does."""
        frame = rec.request_record(self.send_cipher, self.client_id, code, plaintext)
        if check:
            assert self.server.payload_size(frame[:23]) == len(frame) - 23
        return self.server.receive(frame[:23], frame[23:], now)

    def meta(self, file_id: int, size: int, name: str = "f.bin", **flags: Any) -> list[Any]:
        return self.send(828, rec.FileMeta(file_id, size, bytes(16), name, **flags).encode())

    def chunk(self, file_id: int, index: int, data: bytes, final: bool) -> list[Any]:
        return self.send(828, rec.encode_chunk_prefix(file_id, index, final) + data)

    def commit(self, file_id: int, digest: bytes, **fields: Any) -> list[Any]:
        return self.send(rec.COMMIT_IF, rec.CommitIf(file_id, digest, **fields).encode())

    def opened(self, effect: Any) -> tuple[int, bytes]:
        frame = effect.frame
        return int.from_bytes(frame[1:3], "little"), self.recv_cipher.open(frame[:7], frame[7:])


def _streaming() -> Peer:
    return Peer(_handshaken())


def _one_at_a_time() -> Peer:
    return Peer(_handshaken(server_stream=False))


# --- why a connection closed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NoiseError("bad tag"), "handshake"),
        (HandshakeError("bad hello"), "handshake"),
        (rec.RecordError("bad record"), "bad_record"),
        (ValueError("odd"), "malformed"),
        (ProtocolError("generic"), "malformed"),
    ],
)
def test_an_abort_closes_silently_with_a_reason_of_the_fixed_set(
    error: Exception, reason: str
) -> None:
    server = Scenario().server
    assert server.abort(error) == _closed(reason, str(error))
    assert server.state is v4s.ServerStateV4.CLOSED


def test_a_reason_outside_the_fixed_set_is_malformed() -> None:
    class Odd(ProtocolError):
        reason = "something_else"

    assert Scenario().server.abort(Odd("x")) == _closed("malformed", "x")
    assert v4s.CLOSE_REASONS == ("handshake", "bad_record", "malformed")


# --- message 1 under load -------------------------------------------------------------


class FakeGate:
    """A ``HelloGate`` that answers what it is told and records what it was asked."""

    def __init__(self, *answers: Admission) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[bytes, bytes, bytes, float]] = []

    def admit(self, address: bytes, key: bytes, cookie: bytes, now: float) -> Admission:
        self.asked.append((address, key, cookie, now))
        return self.answers.pop(0)

    def cookie_for(self, address: bytes, key: bytes, now: float) -> bytes:
        return b"\x0c" * 16


def _gated(gate: FakeGate) -> tuple[v4s.ServerSessionV4, Any]:
    from eft_protocol.registry import MemoryRegistry  # noqa: PLC0415
    from eft_protocol.v4.client import ClientSessionV4  # noqa: PLC0415

    server = v4s.ServerSessionV4(
        _pair(1),
        MemoryRegistry(),
        gate=gate,  # type: ignore[arg-type]
        peer_address=b"\x7f\x00\x00\x02",
    )
    client = ClientSessionV4(_pair(2), CLIENT, register=True, check_server=lambda _p: None)
    return server, client


def _hello_to(server: v4s.ServerSessionV4, frame: bytes) -> list[Any]:
    assert server.payload_size(frame[:23]) == len(frame) - 23
    return server.receive(frame[:23], frame[23:], 5.0)


def test_a_rate_limited_hello_is_closed_with_its_notice() -> None:
    gate = FakeGate(Admission.RATE_LIMITED)
    server, client = _gated(gate)
    first = client.start()
    effects = _hello_to(server, first)
    assert effects == [HandshakeRateLimited({"limit": "handshake_rate"}), v4s.Close("rate_limited")]
    assert gate.asked == [(b"\x7f\x00\x00\x02", first[23:55], b"", 5.0)]
    assert server.state is v4s.ServerStateV4.CLOSED


def test_the_cookie_reply_and_whether_the_cookie_sent_was_stale() -> None:
    gate = FakeGate(Admission.COOKIE)
    server, client = _gated(gate)
    effects = _hello_to(server, client.start())
    assert _plain(effects) == [("send", 1602), CookieSent({"stale": False})]
    assert effects[0].frame == cookie_reply_header() + b"\x0c" * 16
    assert len(effects[0].frame) == 7 + COOKIE_REPLY_SIZE
    assert server.state is v4s.ServerStateV4.AWAITING_HELLO

    gate = FakeGate(Admission.COOKIE)
    server, client = _gated(gate)
    client.offer = Offer(cookie=b"\x05" * 16)  # a cookie from an earlier rotation
    first = client.start()
    assert _plain(_hello_to(server, first)) == [("send", 1602), CookieSent({"stale": True})]
    assert gate.asked[0][2] == b"\x05" * 16


def test_a_second_message_1_without_a_good_cookie_is_closed() -> None:
    gate = FakeGate(Admission.COOKIE, Admission.COOKIE)
    server, client = _gated(gate)
    _hello_to(server, client.start())
    assert _hello_to(server, client.start()) == _closed("handshake", "a cookie ignored")


def test_revision_1_under_load_is_closed_and_passes_no_cookie() -> None:
    gate = FakeGate(Admission.COOKIE)
    server, _client = _gated(gate)
    payload = bytes(range(1, 33))
    assert server.receive(revision_1_hello_header(), payload, 5.0) == _closed(
        "handshake", "revision 1's hello under load"
    )
    assert gate.asked == [(b"\x7f\x00\x00\x02", payload, b"", 5.0)]


def test_an_answered_hello_goes_on_to_the_dh() -> None:
    gate = FakeGate(Admission.ANSWER)
    server, client = _gated(gate)
    effects = _hello_to(server, client.start())
    assert _plain(effects) == [("send", 1602), HelloAnswered()]
    assert server.state is v4s.ServerStateV4.AWAITING_INTENT


def test_the_revision_1_hello_is_answered_as_a_1602() -> None:
    from tests.v4.test_v4_vectors import REVISION_1_HANDSHAKE  # noqa: PLC0415

    server = Scenario().server
    first = bytes.fromhex(REVISION_1_HANDSHAKE[0])
    effects = server.receive(first[:23], first[23:], 0.0)
    assert _plain(effects) == [("send", 1602), HelloAnswered()]
    assert server.revision == 1


# --- the identity not held ------------------------------------------------------------


def test_a_registration_lost_is_a_taken_name() -> None:
    peer = _streaming()
    effects = peer.server.registration_lost()
    assert _plain(effects) == [
        NameRefused({"reason": "taken_meanwhile"}),
        ("send", ResponseCode.REGISTRATION_FAILED),
        v4s.Close("name_taken"),
    ]
    assert peer.opened(effects[1]) == (ResponseCode.REGISTRATION_FAILED, b"")
    assert peer.server.client_id is None and peer.server.name is None
    assert peer.server.state is v4s.ServerStateV4.CLOSED


def test_a_login_lost_is_an_unknown_client() -> None:
    registered = _streaming()
    registry = registered.server.registry
    scenario = Scenario()
    scenario.server.registry = registry
    scenario.client.register = False
    scenario.to_server(scenario.client.start())
    reply = scenario.to_client(scenario.sent[0])
    scenario.to_server(reply.send[0])
    scenario.to_client(scenario.sent[0])
    peer = Peer(scenario)
    effects = peer.server.registration_lost()
    assert _plain(effects) == [
        ReconnectRefused(),
        ("send", ResponseCode.RECONNECT_DENIED),
        v4s.Close("unknown_client"),
    ]
    assert peer.opened(effects[1]) == (ResponseCode.RECONNECT_DENIED, b"")
    assert peer.server.client_id is None and peer.server.name is None


# --- errors answered ------------------------------------------------------------------


def test_a_refusal_that_goes_on_says_its_code_and_detail() -> None:
    peer = _one_at_a_time()
    peer.server.max_file_size = 10
    effects = peer.meta(1, 11)
    assert _plain(effects) == [
        RequestRefused({"error_code": 3, "detail": "the file is over the limit"}),
        ("send", ResponseCode.SERVER_ERROR),
    ]
    assert peer.opened(effects[1]) == (1607, rec.encode_error(3, "the file is over the limit"))
    assert peer.server.state is v4s.ServerStateV4.IDLE


def test_a_storage_failure_closes_with_the_errors_number() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 3)
    peer.server.upload_ready(0)
    effects = peer.server.storage_failed("disk_full", detail="no room")
    assert _plain(effects) == [
        v4s.DiscardUpload(),
        StorageFailure({"reason": "disk_full", "detail": "no room"}),
        RequestRefused({"error_code": 7, "detail": "the server could not store it: no room"}),
        ("send", 1607),
        v4s.Close("error 7"),
    ]


# --- the connection lost mid-upload ---------------------------------------------------


def test_a_lost_connection_keeps_a_resumable_upload_and_says_aborted() -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 1, "keep.bin")
    peer.server.upload_ready(0)
    assert peer.server.connection_lost() == [
        v4s.SuspendUpload(),
        Transfer({"outcome": "aborted", "file": "keep.bin", "bytes": rec.CHUNK + 1, "version": 4}),
    ]
    assert peer.server.connection_lost() == []


def test_a_lost_connection_drops_a_streamed_upload() -> None:
    peer = _streaming()
    peer.meta(1, 5, "s.bin", stream=True)
    peer.server.upload_ready(0)
    assert peer.server.connection_lost() == [
        v4s.DiscardUpload(),
        Transfer({"outcome": "aborted", "file": "s.bin", "bytes": 5, "version": 4}),
    ]


# --- several files in flight ----------------------------------------------------------


def test_stream_metadata_without_the_feature_closes_the_connection() -> None:
    peer = _one_at_a_time()
    assert peer.meta(1, 1, stream=True) == _closed(
        "bad_record", "STREAM metadata without the STREAM feature"
    )


def _stream_file(peer: Peer, file_id: int, data: bytes, *, sync_now: bool = False) -> list[Any]:
    effects = peer.meta(file_id, len(data), f"f{file_id}", stream=True)
    effects += peer.server.upload_ready(0)
    effects += peer.chunk(file_id, 1, data, True)
    effects += peer.server.upload_complete(file_digest(data).digest(), 10.0)
    return effects + peer.commit(file_id, file_digest(data).digest(), sync_now=sync_now)


def test_the_window_is_full_at_exactly_its_size() -> None:
    peer = _streaming()
    peer.server.unanswered = rec.STREAM_WINDOW - 1
    assert _plain(peer.meta(1, 1, stream=True)) == [
        v4s.OpenUpload(peer.client_id, bytes(16), "f.bin", 1, 1, stream=True)
    ]
    assert peer.server.unanswered == rec.STREAM_WINDOW
    peer = _streaming()
    peer.server.unanswered = rec.STREAM_WINDOW
    assert peer.meta(1, 1, stream=True) == _closed(
        "bad_record", f"more than {rec.STREAM_WINDOW} files unanswered"
    )


def test_a_streamed_file_counts_once_in_the_window_until_its_group_is_answered() -> None:
    peer = _streaming()
    peer.meta(1, 1, "a", stream=True)
    assert peer.server.unanswered == 1
    peer.server.upload_ready(0)
    peer.chunk(1, 1, b"z", True)
    peer.server.upload_complete(file_digest(b"z").digest(), 10.0)
    peer.commit(1, file_digest(b"z").digest())
    assert peer.server.unanswered == 1
    peer.meta(2, 1, "b", stream=True)
    assert peer.server.unanswered == 2
    flushed = peer.server.flush_group()
    assert _plain(flushed) == [v4s.CommitGroup(), ("send", 1603), ("send", 1604)]
    assert peer.server.unanswered == 1
    assert peer.server.flush_group() == []


def test_a_refused_streamed_file_does_not_count_in_the_window() -> None:
    peer = _streaming()
    effects = peer.meta(1, 3, "../x", stream=True)
    assert _plain(effects)[1:] == [("send", 1607)]
    assert peer.server.unanswered == 0
    assert peer.server.state is v4s.ServerStateV4.DRAINING


def test_a_streamed_file_verified_is_staged_with_its_fields() -> None:
    peer = _streaming()
    data = b"hello"
    digest = file_digest(data).digest()
    effects = peer.meta(1, 5, "s.txt", stream=True)
    effects = peer.server.upload_ready(0)
    peer.chunk(1, 1, data, True)
    assert peer.server.upload_complete(digest, 10.0) == [
        Transfer(
            {"outcome": "received", "file": "s.txt", "bytes": 5, "version": 4, "duration": 0.0}
        )
    ]
    effects = peer.send(rec.COMMIT_IF, rec.CommitIf(1, digest, sync_now=True).encode(), 12.5)
    fields = {"file": "s.txt", "bytes": 5, "version": 4, "duration": 2.5}
    assert _plain(effects) == [
        v4s.StageUpload(peer.client_id, "s.txt", 5, digest, 1),
        Transfer({"outcome": "verified", **fields}),
        v4s.CommitGroup(),
        ("send", 1603),
        ("send", 1604),
    ]
    assert peer.opened(effects[3]) == (1603, rec.encode_received(1, 5, digest, 1))
    assert peer.opened(effects[4]) == (1604, rec.encode_outcome(1, rec.Outcome.STORED))
    assert peer.server.state is v4s.ServerStateV4.IDLE


def test_a_streamed_file_that_differs_is_discarded_and_answered_with_the_group() -> None:
    peer = _streaming()
    data = b"hello"
    digest = file_digest(data).digest()
    peer.meta(1, 5, "s.txt", stream=True)
    peer.server.upload_ready(0)
    peer.chunk(1, 1, data, True)
    peer.server.upload_complete(digest, 10.0)
    effects = peer.commit(1, bytes(32))
    assert effects == [
        v4s.DiscardUpload(),
        Transfer(
            {"outcome": "retried", "file": "s.txt", "bytes": 5, "version": 4, "duration": 0.0}
        ),
    ]
    flushed = peer.server.flush_group()
    assert peer.opened(flushed[1]) == (1603, rec.encode_received(1, 5, digest, 1))
    assert peer.opened(flushed[2]) == (1604, rec.encode_outcome(1, rec.Outcome.DIGEST_DIFFERED))


def test_a_group_is_answered_once_it_has_group_files() -> None:
    peer = _streaming()
    for file_id in range(1, v4s.GROUP_FILES):
        effects = _stream_file(peer, file_id, b"d")
        assert not any(isinstance(e, v4s.CommitGroup) for e in effects)
    effects = _stream_file(peer, v4s.GROUP_FILES, b"d")
    assert effects.count(v4s.CommitGroup()) == 1
    assert peer.server.unanswered == 0


@pytest.mark.parametrize(
    ("commit", "detail"),
    [
        (rec.CommitIf(2, bytes(32)), "903 for a file that is not open"),
        (rec.CommitIf(1, bytes(32), 2), "903's digest algorithm is not the metadata's"),
    ],
)
def test_a_903_that_does_not_match_the_open_file_closes(commit: rec.CommitIf, detail: str) -> None:
    peer = _streaming()
    peer.meta(1, 1, "a", stream=True)
    peer.server.upload_ready(0)
    peer.chunk(1, 1, b"z", True)
    peer.server.upload_complete(file_digest(b"z").digest(), 10.0)
    assert peer.send(rec.COMMIT_IF, commit.encode()) == [
        ClosedSilently({"reason": "bad_record", "detail": detail}),
        v4s.DiscardUpload(),
        v4s.Close("bad_record"),
    ]


def test_a_903_without_an_open_file_closes() -> None:
    peer = _streaming()
    commit = rec.CommitIf(1, bytes(32)).encode()
    assert peer.send(rec.COMMIT_IF, commit, check=False) == _closed(
        "bad_record", "903 for a file that is not open"
    )


def _refused_stream(peer: Peer, size: int) -> None:
    peer.meta(1, size, "../x", stream=True)
    assert peer.server.state is v4s.ServerStateV4.DRAINING


def test_a_refused_files_data_is_drained_then_its_903_ends_it() -> None:
    peer = _streaming()
    _refused_stream(peer, rec.CHUNK + 2)
    assert peer.chunk(1, 1, bytes(rec.CHUNK), False) == []
    assert peer.chunk(1, 2, b"ab", True) == []
    assert peer.commit(1, bytes(32)) == []
    assert peer.server.state is v4s.ServerStateV4.IDLE
    assert peer.server._drain is None


def test_a_refused_files_903_with_sync_now_answers_the_group_staged_before() -> None:
    peer = _streaming()
    _stream_file(peer, 1, b"d")
    peer.meta(2, 1, "../x", stream=True)
    peer.chunk(2, 1, b"z", True)
    effects = peer.commit(2, bytes(32), sync_now=True)
    assert _plain(effects) == [v4s.CommitGroup(), ("send", 1603), ("send", 1604)]


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ((2, 1, b"ab", True), "refused file's data out of order"),
        ((1, 2, b"ab", True), "refused file's data out of order"),
        ((1, 1, b"ab", False), "refused file's data out of order"),
        ((1, 1, b"abc", True), "refused file's data out of order"),
    ],
)
def test_a_refused_files_data_out_of_order_closes(
    record: tuple[int, int, bytes, bool], detail: str
) -> None:
    peer = _streaming()
    _refused_stream(peer, 2)
    assert peer.chunk(*record) == _closed("bad_record", detail)


def test_a_new_file_or_more_data_while_draining_closes() -> None:
    peer = _streaming()
    _refused_stream(peer, 1)
    assert peer.meta(2, 1, stream=True) == _closed(
        "bad_record", "a new file before the refused one's data ended"
    )
    peer = _streaming()
    _refused_stream(peer, 1)
    peer.chunk(1, 1, b"z", True)
    assert peer.chunk(1, 2, b"z", True) == _closed(
        "bad_record", "a new file before the refused one's data ended"
    )


@pytest.mark.parametrize("file_id", [1, 2])
def test_a_903_for_a_refused_file_before_its_data_ended_closes(file_id: int) -> None:
    peer = _streaming()
    _refused_stream(peer, rec.CHUNK + 1)
    peer.chunk(1, 1, bytes(rec.CHUNK), False)
    assert peer.commit(file_id, bytes(32)) == _closed(
        "bad_record", "903 for a refused file before its data ended"
    )


def test_a_903_for_another_file_after_the_refused_files_data_closes() -> None:
    peer = _streaming()
    _refused_stream(peer, 1)
    peer.chunk(1, 1, b"z", True)
    assert peer.commit(2, bytes(32)) == _closed(
        "bad_record", "903 for a refused file before its data ended"
    )
