"""``ServerSessionV4`` one effect list at a time: what each step returns, exactly.

The vectors and the in-memory links check that a client and the server agree; these
check what the server tells its driver and its operator: the notices and their fields
(the log lines, the metrics' labels), the close reasons, the detail of a silent close,
and the answers' codes and payloads, so that a changed word or field fails here.
"""

from __future__ import annotations

import tracemalloc
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
    QuietTransfer,
    ReconnectRefused,
    RequestRefused,
    StorageFailure,
    Transfer,
)
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import handshake as hs
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

    def meta(
        self, file_id: int, size: int, name: str = "f.bin", now: float = 10.0, **flags: Any
    ) -> list[Any]:
        return self.send(828, rec.FileMeta(file_id, size, bytes(16), name, **flags).encode(), now)

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
    window = _streaming().server.window
    assert window == rec.WIDE_STREAM_WINDOW  # our client offers WIDE_WINDOW
    peer = _streaming()
    peer.server.unanswered = window - 1
    assert _plain(peer.meta(1, 1, stream=True)) == [
        v4s.OpenUpload(peer.client_id, bytes(16), "f.bin", 1, 1, stream=True)
    ]
    assert peer.server.unanswered == window
    peer = _streaming()
    peer.server.unanswered = window
    assert peer.meta(1, 1, stream=True) == _closed(
        "bad_record", f"more than {window} files unanswered"
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
    assert _plain(flushed)[:3] == [v4s.CommitGroup(), ("send", 1603), ("send", 1604)]
    assert [type(e) for e in flushed[3:]] == [QuietTransfer]  # counted once durable
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
    # QuietTransfer: a streamed file's "received" and "verified" are logged at debug level
    # (its connection logs one files_streamed line); one at a time they stay at info.
    assert peer.server.upload_complete(digest, 10.0) == [
        QuietTransfer(
            {"outcome": "received", "file": "s.txt", "bytes": 5, "version": 4, "duration": 0.0}
        )
    ]
    effects = peer.send(rec.COMMIT_IF, rec.CommitIf(1, digest, sync_now=True).encode(), 12.5)
    fields = {"file": "s.txt", "bytes": 5, "version": 4, "duration": 2.5}
    # The "verified" notice comes with the group's answers, after its CommitGroup: a
    # group whose commit fails is not counted as stored.
    assert _plain(effects) == [
        v4s.StageUpload(peer.client_id, "s.txt", 5, digest, 1),
        v4s.CommitGroup(),
        ("send", 1603),
        ("send", 1604),
        QuietTransfer({"outcome": "verified", **fields}),
    ]
    assert peer.opened(effects[2]) == (1603, rec.encode_received(1, 5, digest, 1))
    assert peer.opened(effects[3]) == (1604, rec.encode_outcome(1, rec.Outcome.STORED))
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
    group = peer.server.group_files
    assert group == rec.WIDE_STREAM_WINDOW // 2
    for file_id in range(1, group):
        effects = _stream_file(peer, file_id, b"d")
        assert not any(isinstance(e, v4s.CommitGroup) for e in effects)
    effects = _stream_file(peer, group, b"d")
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
    assert _plain(effects)[:3] == [v4s.CommitGroup(), ("send", 1603), ("send", 1604)]
    assert [type(e) for e in effects[3:]] == [QuietTransfer]


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


# --- folders --------------------------------------------------------------------------


def test_a_folder_is_made_and_answered_at_once() -> None:
    peer = _streaming()
    effects = peer.meta(3, 0, "a/b", directory=True)
    assert _plain(effects) == [
        v4s.MakeFolder(peer.client_id, "a/b"),
        Transfer({"outcome": "folder", "file": "a/b", "version": 4}),
        ("send", 1604),
    ]
    assert peer.opened(effects[2]) == (1604, rec.encode_resume(3, 0))
    assert peer.server.state is v4s.ServerStateV4.IDLE
    assert peer.server._last_file_id == 3


def test_a_folder_with_a_bad_name_is_refused_and_the_session_goes_on() -> None:
    peer = _streaming()
    effects = peer.meta(1, 0, "../up", directory=True)
    (refused, answer) = effects
    assert isinstance(refused, RequestRefused) and refused.fields["error_code"] == 2
    assert peer.opened(answer)[1] == rec.encode_error(2, refused.fields["detail"])
    assert peer.server.state is v4s.ServerStateV4.IDLE


def test_a_folder_in_the_way_is_refused_by_its_driver() -> None:
    peer = _streaming()
    peer.meta(1, 0, "a", directory=True)
    effects = peer.server.folder_refused("a file is in the way")
    assert _plain(effects) == [
        RequestRefused({"error_code": 2, "detail": "a file is in the way"}),
        ("send", 1607),
    ]
    assert peer.opened(effects[1]) == (1607, rec.encode_error(2, "a file is in the way"))
    assert peer.server.state is v4s.ServerStateV4.IDLE


def test_folder_metadata_without_the_feature_closes() -> None:
    peer = _one_at_a_time()
    assert peer.meta(1, 0, "a", directory=True) == _closed(
        "bad_record", "folder metadata without the STREAM feature"
    )


def test_folder_metadata_mid_upload_closes() -> None:
    peer = _streaming()
    peer.meta(1, 5, "f", stream=True)
    peer.server.upload_ready(0)
    folder = rec.FileMeta(2, 0, bytes(16), "a", directory=True).encode()
    assert peer.send(828, folder, check=False) == [
        ClosedSilently(
            {"reason": "bad_record", "detail": "folder metadata while an upload is open"}
        ),
        v4s.DiscardUpload(),
        v4s.Close("bad_record"),
    ]


@pytest.mark.parametrize("file_id", [1, 2])
def test_folder_ids_must_increase(file_id: int) -> None:
    peer = _streaming()
    peer.meta(2, 0, "a", directory=True)
    assert peer.meta(file_id, 0, "b", directory=True) == _closed(
        "bad_record", "file ids must increase within a connection"
    )


# --- one file at a time ---------------------------------------------------------------


def test_a_file_s_chunks_are_opened_into_the_buffers_the_driver_lends() -> None:
    """A 1 MiB chunk record given a buffer (``receive(..., out)``: the server's pool,
    bounded server-wide, issue 22) makes no new 1 MiB object: its ``WriteChunk`` holds a
    view of that buffer, and an earlier chunk's buffer is left as it was. Without one,
    the record is opened as any other."""
    peer = _one_at_a_time()
    size = 4 * rec.CHUNK
    peer.meta(1, size, "big.bin")
    peer.server.upload_ready(0)
    data = [bytes([index]) * rec.CHUNK for index in range(1, 5)]
    records = [
        rec.request_record(
            peer.send_cipher,
            peer.client_id,
            828,
            rec.encode_chunk_prefix(1, index, index == 4) + data[index - 1],
        )
        for index in range(1, 5)
    ]
    frames = [(record[:23], record[23:]) for record in records]  # the driver's pieces
    assert peer.server.receive(*frames[0], 10.0) == [v4s.WriteChunk(1, data[0])]
    lent = [bytearray(rec.MAX_PLAINTEXT), bytearray(rec.MAX_PLAINTEXT)]
    (second,) = peer.server.receive(*frames[1], 10.0, lent[0])
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        (third,) = peer.server.receive(*frames[2], 10.0, lent[1])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < rec.CHUNK // 4
    # chunk 2 still as it came (written in the background while chunk 3 is opened)
    assert (second, third) == (v4s.WriteChunk(2, data[1]), v4s.WriteChunk(3, data[2]))
    assert isinstance(second, v4s.WriteChunk) and isinstance(third, v4s.WriteChunk)
    assert isinstance(second.data, memoryview) and second.data.obj is lent[0]
    assert isinstance(third.data, memoryview) and third.data.obj is lent[1]
    assert peer.server.receive(*frames[3], 10.0) == [v4s.WriteChunk(4, data[3]), v4s.FinishUpload()]


def test_a_file_received_is_reported_then_answered() -> None:
    peer = _one_at_a_time()
    assert peer.meta(1, 3, "one.txt", now=4.0) == [
        v4s.OpenUpload(peer.client_id, bytes(16), "one.txt", 3, 1, stream=False)
    ]
    (answer,) = peer.server.upload_ready(0)
    assert peer.opened(answer) == (1604, rec.encode_resume(1, 1))
    assert peer.chunk(1, 1, b"abc", True) == [v4s.WriteChunk(1, b"abc"), v4s.FinishUpload()]
    digest = file_digest(b"abc").digest()
    effects = peer.server.upload_complete(digest, 9.5)
    assert _plain(effects) == [
        Transfer(
            {"outcome": "received", "file": "one.txt", "bytes": 3, "version": 4, "duration": 5.5}
        ),
        ("send", 1603),
    ]
    assert peer.opened(effects[1]) == (1603, rec.encode_received(1, 3, digest, 1))


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ((2, 1, b"ab", False), "file data out of order"),
        ((1, 2, b"ab", False), "file data out of order"),
        ((1, 1, bytes(rec.CHUNK), True), "file data of the wrong size or finality"),
        ((1, 1, bytes(rec.CHUNK - 1), False), "file data of the wrong size or finality"),
    ],
)
def test_file_data_out_of_order_closes_and_keeps_the_upload(
    record: tuple[int, int, bytes, bool], detail: str
) -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 2)
    peer.server.upload_ready(0)
    assert peer.chunk(*record) == [
        ClosedSilently({"reason": "bad_record", "detail": detail}),
        v4s.SuspendUpload(),
        v4s.Close("bad_record"),
    ]


def test_file_data_without_an_upload_closes() -> None:
    peer = _one_at_a_time()
    data = rec.encode_chunk_prefix(1, 1, True) + b"x"
    assert peer.send(828, data, check=False) == _closed(
        "bad_record", "file data without an open upload"
    )


def test_a_bad_header_fed_as_bytes_closes_silently_and_stops() -> None:
    peer = _one_at_a_time()
    header = bytes(16) + b"\x03" + (828).to_bytes(2, "little") + (16).to_bytes(4, "little")
    assert peer.server.receive_data(header + bytes(16), 0.0) == _closed(
        "handshake", "version 3 in a version-4 connection"
    )


# --- the verdicts of one file at a time -----------------------------------------------


def _received(peer: Peer, data: bytes = b"abc", name: str = "v.txt") -> bytes:
    peer.meta(1, len(data), name, now=1.0)
    peer.server.upload_ready(0)
    peer.chunk(1, 1, data, True)
    digest = file_digest(data).digest()
    peer.server.upload_complete(digest, 2.0)
    return digest


def test_900_commits_the_file_and_acknowledges() -> None:
    peer = _one_at_a_time()
    digest = _received(peer)
    effects = peer.send(900, rec.encode_file_id(1), now=3.0)
    fields = {"file": "v.txt", "bytes": 3, "version": 4, "duration": 2.0}
    assert _plain(effects) == [
        v4s.CommitUpload(peer.client_id, "v.txt", 3, digest, 1),
        Transfer({"outcome": "verified", **fields}),
        ("send", 1604),
    ]
    assert peer.opened(effects[2]) == (1604, rec.encode_file_id(1))
    assert peer.server.state is v4s.ServerStateV4.IDLE


@pytest.mark.parametrize(("code", "outcome"), [(901, "retried"), (902, "gave_up")])
def test_901_and_902_after_the_data_discard_it(code: int, outcome: str) -> None:
    peer = _one_at_a_time()
    _received(peer)
    effects = peer.send(code, rec.encode_file_id(1), now=3.0)
    fields = {"file": "v.txt", "bytes": 3, "version": 4, "duration": 2.0}
    assert _plain(effects) == [
        v4s.DiscardUpload(),
        Transfer({"outcome": outcome, **fields}),
        ("send", 1604),
    ]


def test_902_midway_is_an_abort() -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 1, "big", now=1.0)
    peer.server.upload_ready(0)
    peer.chunk(1, 1, bytes(rec.CHUNK), False)
    effects = peer.send(902, rec.encode_file_id(1), now=3.0)
    assert effects[:2] == [
        v4s.DiscardUpload(),
        Transfer(
            {
                "outcome": "aborted",
                "file": "big",
                "bytes": rec.CHUNK + 1,
                "version": 4,
                "duration": 2.0,
            }
        ),
    ]


def test_a_verdict_for_another_file_closes() -> None:
    peer = _one_at_a_time()
    _received(peer)
    assert peer.send(900, rec.encode_file_id(2)) == [
        ClosedSilently({"reason": "bad_record", "detail": "verdict for a file that is not open"}),
        v4s.Close("bad_record"),
    ]


def test_metadata_ids_must_increase_and_one_file_at_a_time() -> None:
    peer = _one_at_a_time()
    _received(peer)
    peer.send(900, rec.encode_file_id(1))
    assert peer.meta(1, 1) == _closed("bad_record", "file ids must increase within a connection")
    peer = _one_at_a_time()
    peer.meta(1, 1)
    peer.server.upload_ready(0)
    assert peer.send(828, rec.FileMeta(2, 1, bytes(16), "x").encode(), check=False) == [
        ClosedSilently({"reason": "bad_record", "detail": "file metadata while an upload is open"}),
        v4s.SuspendUpload(),
        v4s.Close("bad_record"),
    ]


def test_an_unknown_digest_algorithm_is_refused_by_number() -> None:
    peer = _one_at_a_time()
    effects = peer.send(828, rec.FileMeta(1, 1, bytes(16), "x", 77).encode())
    assert effects[0] == RequestRefused({"error_code": 10, "detail": "unknown digest algorithm 77"})


def test_a_file_of_exactly_the_limit_is_opened() -> None:
    peer = _one_at_a_time()
    peer.server.max_file_size = 10
    assert isinstance(peer.meta(1, 10)[0], v4s.OpenUpload)


# --- what storage found ---------------------------------------------------------------


def test_a_resumed_upload_starts_after_its_durable_chunks_and_says_so() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 3 * rec.CHUNK, "r")
    effects = peer.server.upload_ready(2)
    assert _plain(effects) == [v4s.UploadResumed({"chunk": 3, "of": 3}), ("send", 1604)]  # type: ignore[attr-defined]
    assert peer.opened(effects[1]) == (1604, rec.encode_resume(1, 3))


def test_the_final_chunk_is_always_sent_again() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 2 * rec.CHUNK, "r")
    effects = peer.server.upload_ready(2)
    assert peer.opened(effects[1]) == (1604, rec.encode_resume(1, 2))
    assert peer.server._upload is not None and peer.server._upload.resumed_from == 2


def test_no_room_is_said_with_both_figures() -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 10, "r")
    effects = peer.server.upload_ready(1, room=9)
    detail = "no space: the file needs 10 more bytes, the server has room for 9"
    assert _plain(effects) == [
        v4s.SuspendUpload(),
        RequestRefused({"error_code": 8, "detail": detail}),
        ("send", 1607),
    ]
    assert peer.server.state is v4s.ServerStateV4.IDLE


@pytest.mark.parametrize(("room", "fits"), [(10, True), (-5, False), (None, True)])
def test_room_is_compared_with_what_is_missing(room: int | None, fits: bool) -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 10, "r")
    effects = peer.server.upload_ready(1, room=room)
    assert (not any(isinstance(e, RequestRefused) for e in effects)) is fits


def test_an_empty_file_fits_in_no_room() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 0, "empty")
    assert _plain(peer.server.upload_ready(0, room=-1)) == [("send", 1604)]


def test_a_fresh_upload_refused_is_discarded_and_a_conflict_named() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 5, "a/b")
    effects = peer.server.upload_ready(0, conflict="a is a file")
    assert _plain(effects) == [
        v4s.DiscardUpload(),
        RequestRefused({"error_code": 2, "detail": "a is a file"}),
        ("send", 1607),
    ]


def test_a_streamed_upload_refused_for_room_is_drained() -> None:
    peer = _streaming()
    peer.meta(1, 5, "s", stream=True)
    assert peer.server.unanswered == 1
    effects = peer.server.upload_ready(3, room=4)
    detail = "no space: the file needs 5 more bytes, the server has room for 4"
    assert _plain(effects) == [
        v4s.DiscardUpload(),
        RequestRefused({"error_code": 8, "detail": detail}),
        ("send", 1607),
    ]
    assert peer.server.unanswered == 0
    assert peer.server.state is v4s.ServerStateV4.DRAINING
    assert peer.chunk(1, 1, b"12345", True) == []


def test_a_busy_upload_is_kept_and_closes() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 5, "s")
    effects = peer.server.storage_failed("busy", busy=True)
    assert _plain(effects) == [
        StorageFailure({"reason": "busy", "detail": "busy"}),
        RequestRefused({"error_code": 5, "detail": "the upload is busy on another connection"}),
        ("send", 1607),
        v4s.Close("error 5"),
    ]


# --- message 3: who the client is -----------------------------------------------------


class _Policy(MemoryRegistry):
    """A registry with a policy of its own (a ``RegistrationGate``)."""

    def __init__(self, refusal: str | None) -> None:
        super().__init__()
        self.refusal = refusal
        self.asked: list[tuple[str, bytes, int, float, bytes]] = []

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        self.asked.append((name, client_id, version, now, token))
        return self.refusal


def _intent_effects(
    registry: MemoryRegistry,
    *,
    name: str = CLIENT,
    register: bool = True,
    open_registration: bool = True,
    token: bytes = b"",
    client_seed: int = 2,
    now: float = 7.0,
) -> tuple[list[Any], v4s.ServerSessionV4, Any]:
    from eft_protocol.v4.client import ClientSessionV4  # noqa: PLC0415

    server = v4s.ServerSessionV4(_pair(1), registry, open_registration=open_registration)
    client = ClientSessionV4(
        _pair(client_seed), name, register=register, check_server=lambda _p: None, token=token
    )
    first = client.start()
    (hello_frame, _answered) = server.receive(first[:23], first[23:], 1.0)
    assert isinstance(hello_frame, v4s.SendFrame)
    hello = hello_frame.frame
    third = client.receive(hello[:7], hello[7:]).send[0]
    return server.receive(third[:23], third[23:], now), server, client


def _answer(client: Any, effect: Any) -> tuple[int, bytes]:
    frame = effect.frame
    return int.from_bytes(frame[1:3], "little"), client._recv.open(frame[:7], frame[7:])


def test_a_registration_is_welcomed_and_saved() -> None:
    registry = MemoryRegistry()
    effects, server, client = _intent_effects(registry)
    client_id = client.client_id
    assert _plain(effects) == [
        v4s.ClientRegistered({"client_id": client_id.hex(), "version": 4}),  # type: ignore[attr-defined]
        ("send", 1600),
    ]
    assert _answer(client, effects[1]) == (1600, client_id)
    saved = registry.client_v4_by_key(_pair(2).public)
    assert saved is not None and (saved.client_id, saved.name) == (client_id, CLIENT)
    assert (saved.registered_at, saved.last_seen) == (7.0, 7.0)
    assert (server.client_id, server.name) == (client_id, CLIENT)
    assert server.state is v4s.ServerStateV4.IDLE


def test_a_login_is_welcomed_and_its_last_seen_moved() -> None:
    registry = MemoryRegistry()
    _intent_effects(registry)
    effects, server, client = _intent_effects(registry, register=False)
    assert _plain(effects) == [
        v4s.ClientReconnected({"client_id": client.client_id.hex(), "version": 4}),  # type: ignore[attr-defined]
        ("send", 1605),
    ]
    assert _answer(client, effects[1]) == (1605, client.client_id)
    assert server._registered_now is False
    saved = registry.client_v4_by_key(_pair(2).public)
    assert saved is not None and saved.last_seen == 7.0


def test_registering_again_under_ones_own_name_is_welcomed() -> None:
    registry = MemoryRegistry()
    _intent_effects(registry)
    effects, server, _client = _intent_effects(registry, open_registration=False)
    assert _plain(effects)[1] == ("send", 1600)
    assert server._registered_now is True


def test_a_closed_registration_is_refused_in_words() -> None:
    effects, server, client = _intent_effects(MemoryRegistry(), open_registration=False)
    assert _plain(effects) == [
        RequestRefused({"error_code": 4, "detail": "registration is closed"}),
        ("send", 1607),
        v4s.Close("error 4"),
    ]
    assert _answer(client, effects[1]) == (1607, rec.encode_error(4, "registration is closed"))
    assert server.client_id is None


def test_a_name_taken_by_another_key_is_refused() -> None:
    registry = MemoryRegistry()
    _intent_effects(registry)
    effects, _server, client = _intent_effects(registry, client_seed=3)
    assert _plain(effects) == [NameRefused(), ("send", 1601), v4s.Close("name_taken")]
    assert _answer(client, effects[1]) == (1601, b"")


def test_a_known_key_under_another_name_is_refused() -> None:
    registry = MemoryRegistry()
    _intent_effects(registry)
    effects, _server, _client = _intent_effects(registry, name="bob")
    assert _plain(effects) == [NameRefused(), ("send", 1601), v4s.Close("name_taken")]


@pytest.mark.parametrize(("name", "seed"), [(CLIENT, 3), ("bob", 2)])
def test_a_login_unknown_by_key_or_name_is_refused(name: str, seed: int) -> None:
    registry = MemoryRegistry()
    _intent_effects(registry)
    effects, _server, client = _intent_effects(
        registry, name=name, register=False, client_seed=seed
    )
    assert _plain(effects) == [ReconnectRefused(), ("send", 1606), v4s.Close("unknown_client")]
    assert _answer(client, effects[1]) == (1606, b"")


def test_a_gated_registry_decides_even_with_registration_closed() -> None:
    registry = _Policy(None)
    effects, _server, client = _intent_effects(registry, open_registration=False, token=b"invite")
    assert _plain(effects)[1] == ("send", 1600)
    assert registry.asked == [(CLIENT, client.client_id, 4, 7.0, b"invite")]


def test_a_gated_registry_refusal_says_why() -> None:
    effects, _server, _client = _intent_effects(_Policy("not invited"))
    assert _plain(effects) == [
        RequestRefused({"error_code": 4, "detail": "registration refused: not invited"}),
        ("send", 1607),
        v4s.Close("error 4"),
    ]


def test_an_intent_whose_code_differs_from_its_header_closes() -> None:
    from eft_protocol.v4.client import ClientSessionV4  # noqa: PLC0415

    server = v4s.ServerSessionV4(_pair(1), MemoryRegistry())
    client = ClientSessionV4(_pair(2), CLIENT, register=True, check_server=lambda _p: None)
    first = client.start()
    (hello_frame, _answered) = server.receive(first[:23], first[23:], 1.0)
    assert isinstance(hello_frame, v4s.SendFrame)
    hello = hello_frame.frame
    third = client.receive(hello[:7], hello[7:]).send[0]
    header = third[:17] + (827).to_bytes(2, "little") + third[19:23]
    assert server.receive(header, third[23:], 1.0) == _closed(
        "handshake", "the intent's code differs from its header's"
    )


# --- headers before their payload -----------------------------------------------------


def test_payload_size_checks_each_state_s_header() -> None:
    server = Scenario().server
    with pytest.raises(HandshakeError, match="request 828 is not allowed while awaiting_hello"):
        server.payload_size(bytes(16) + b"\x04" + (828).to_bytes(2, "little") + bytes(4))
    with pytest.raises(HandshakeError, match=r"^the first message's header is not the v4 hello$"):
        server.payload_size(bytes(15) + b"\x01\x04" + (826).to_bytes(2, "little") + b"\x26\0\0\0")
    assert server.payload_size(revision_1_hello_header()) == 32


def test_a_payload_of_another_length_than_its_header_closes() -> None:
    server = Scenario().server
    header = bytes(16) + b"\x04" + (826).to_bytes(2, "little") + (38).to_bytes(4, "little")
    assert server.receive(header, bytes(37), 0.0) == _closed(
        "handshake", "payload length differs from its header"
    )


# --- what earlier tests left alive ----------------------------------------------------


def test_frames_before_a_bad_header_keep_their_effects() -> None:
    peer = _streaming()
    folder = rec.request_record(
        peer.send_cipher,
        peer.client_id,
        828,
        rec.FileMeta(1, 0, bytes(16), "d", directory=True).encode(),
    )
    bad = bytes(16) + b"\x03" + (828).to_bytes(2, "little") + (16).to_bytes(4, "little")
    effects = peer.server.receive_data(folder + bad, 0.0)
    assert _plain(effects) == [
        v4s.MakeFolder(peer.client_id, "d"),
        Transfer({"outcome": "folder", "file": "d", "version": 4}),
        ("send", 1604),
        *_closed("handshake", "version 3 in a version-4 connection"),
    ]


def test_a_folders_bad_name_says_which_rule() -> None:
    peer = _streaming()
    (refused, _answer_frame) = peer.meta(1, 0, "../up", directory=True)
    assert refused == RequestRefused({"error_code": 2, "detail": "'../up' has a '..' component"})


def test_a_refused_files_903_without_sync_now_leaves_the_group_staged() -> None:
    peer = _streaming()
    _stream_file(peer, 1, b"d")
    peer.meta(2, 1, "../x", stream=True)
    peer.chunk(2, 1, b"z", True)
    assert peer.commit(2, bytes(32)) == []
    flushed = peer.server.flush_group()
    assert _plain(flushed)[:3] == [v4s.CommitGroup(), ("send", 1603), ("send", 1604)]
    assert [type(e) for e in flushed[3:]] == [QuietTransfer]


def test_after_a_903_nothing_is_open() -> None:
    peer = _streaming()
    _stream_file(peer, 1, b"d")
    assert peer.server.connection_lost() == []


def test_a_sha256_streamed_file_is_staged_and_answered_as_sha256() -> None:
    import hashlib  # noqa: PLC0415

    peer = _streaming()
    data = b"sha"
    digest = hashlib.sha256(data).digest()
    meta = rec.FileMeta(1, 3, bytes(16), "h", 2, stream=True).encode()
    peer.send(828, meta)
    peer.server.upload_ready(0)
    peer.chunk(1, 1, data, True)
    peer.server.upload_complete(digest, 10.0)
    effects = peer.commit(1, digest, digest_algorithm=2, sync_now=True)
    assert effects[0] == v4s.StageUpload(peer.client_id, "h", 3, digest, 2)
    assert effects[1] == v4s.CommitGroup()
    assert peer.opened(effects[2]) == (1603, rec.encode_received(1, 3, digest, 2))


def test_file_data_after_the_last_chunk_is_not_an_open_upload() -> None:
    peer = _one_at_a_time()
    _received(peer)
    data = rec.encode_chunk_prefix(1, 2, True) + b"x"
    assert peer.send(828, data, check=False) == [
        ClosedSilently({"reason": "bad_record", "detail": "file data without an open upload"}),
        v4s.Close("bad_record"),
    ]


def test_after_a_storage_failure_nothing_is_open_or_staged() -> None:
    peer = _streaming()
    _stream_file(peer, 1, b"d")
    peer.meta(2, 1, "g", stream=True)
    peer.server.storage_failed("disk_full")
    assert peer.server.flush_group() == []
    assert peer.server.connection_lost() == []


def test_a_streamed_upload_ignores_what_storage_found_kept() -> None:
    size = 2 * rec.CHUNK + 1
    peer = _streaming()
    peer.meta(1, size, "s", stream=True)
    (answer,) = peer.server.upload_ready(2)
    assert peer.opened(answer) == (1604, rec.encode_resume(1, 1))  # from chunk 1
    peer = _streaming()
    peer.meta(1, size, "s", stream=True)
    effects = peer.server.upload_ready(2, room=rec.CHUNK + 2)  # the whole file is needed
    assert isinstance(effects[1], RequestRefused) and effects[1].fields["error_code"] == 8
    assert peer.server.connection_lost() == []


def test_room_counts_at_most_all_chunks_but_the_last_as_kept() -> None:
    peer = _one_at_a_time()
    peer.meta(1, rec.CHUNK + 10, "r")
    effects = peer.server.upload_ready(5, room=9)  # only chunk 1 counts: 10 bytes needed
    assert effects[1] == RequestRefused(
        {
            "error_code": 8,
            "detail": "no space: the file needs 10 more bytes, the server has room for 9",
        }
    )
    assert peer.server.connection_lost() == []


def test_one_byte_does_not_fit_in_no_room() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 1, "one")
    effects = peer.server.upload_ready(0, room=0)
    assert effects[1] == RequestRefused(
        {
            "error_code": 8,
            "detail": "no space: the file needs 1 more bytes, the server has room for 0",
        }
    )


def test_a_transfer_resumed_from_chunk_2_says_so() -> None:
    peer = _one_at_a_time()
    peer.meta(1, 3 * rec.CHUNK, "r")
    peer.server.upload_ready(1)
    assert peer.server.connection_lost() == [
        v4s.SuspendUpload(),
        Transfer(
            {
                "outcome": "aborted",
                "file": "r",
                "bytes": 3 * rec.CHUNK,
                "version": 4,
                "resumed_from_chunk": 2,
            }
        ),
    ]


def test_the_upload_id_goes_to_storage() -> None:
    peer = _one_at_a_time()
    meta = rec.FileMeta(1, 3, b"\x09" * 16, "u").encode()
    assert peer.send(828, meta) == [v4s.OpenUpload(peer.client_id, b"\x09" * 16, "u", 3, 1)]


def test_registering_again_keeps_the_first_registration_time() -> None:
    registry = MemoryRegistry()
    _intent_effects(registry, now=7.0)
    _intent_effects(registry, now=9.0)
    saved = registry.client_v4_by_key(_pair(2).public)
    assert saved is not None and (saved.registered_at, saved.last_seen) == (7.0, 9.0)


def test_a_sha256_file_is_committed_as_sha256() -> None:
    import hashlib  # noqa: PLC0415

    peer = _one_at_a_time()
    digest = hashlib.sha256(b"abc").digest()
    peer.send(828, rec.FileMeta(1, 3, bytes(16), "h", 2).encode())
    peer.server.upload_ready(0)
    peer.chunk(1, 1, b"abc", True)
    peer.server.upload_complete(digest, 2.0)
    effects = peer.send(900, rec.encode_file_id(1))
    assert effects[0] == v4s.CommitUpload(peer.client_id, "h", 3, digest, 2)


def _intent_header(client_id: bytes, size: int) -> bytes:
    return client_id + b"\x04" + (825).to_bytes(2, "little") + size.to_bytes(4, "little")


def test_the_third_messages_header_is_checked_before_its_payload() -> None:
    from tests.v4.test_v4_vectors import FRAMES  # noqa: PLC0415

    server = Scenario().server
    first = FRAMES[0][2]
    server.receive(first[:23], first[23:], 0.0)
    assert server.state is v4s.ServerStateV4.AWAITING_INTENT
    low, high = hs.MIN_INTENT_MESSAGE, hs.MAX_INTENT_MESSAGE
    assert server.payload_size(_intent_header(bytes(16), low)) == low
    assert server.payload_size(_intent_header(bytes(16), high)) == high
    for header in (
        _intent_header(bytes(16), low - 1),
        _intent_header(bytes(16), high + 1),
        _intent_header(bytes(15) + b"\x01", low),
    ):
        with pytest.raises(HandshakeError, match=r"^bad third handshake message header$"):
            server.payload_size(header)


def test_a_fresh_session_has_selected_nothing_and_holds_no_key() -> None:
    server = Scenario().server
    assert (server.revision, server.features) == (0, 0)
    assert server.name is None and server.client_id is None
    assert server.has_key is False


def test_an_offer_with_no_revision_in_common_is_answered_then_closed() -> None:
    scenario = Scenario()
    scenario.client.offer = Offer(revisions=frozenset({3}), features=0)
    first = scenario.client.start()
    effects = scenario.server.receive(first[:23], first[23:], 0.0)
    assert _plain(effects) == [
        ("send", 1602),
        HelloAnswered(),
        *_closed("handshake", "the client offered no revision we speak ([3])"),
    ]


def test_the_hello_says_whether_registration_is_open() -> None:
    for open_registration in (True, False):
        scenario = Scenario()
        scenario.server.open_registration = open_registration
        scenario.to_server(scenario.client.start())
        scenario.to_client(scenario.sent[0])
        hello = scenario.client.server_hello
        assert hello is not None and hello.open_registration is open_registration


def test_a_record_header_is_for_this_client_and_of_a_record_size() -> None:
    peer = _one_at_a_time()
    header = peer.client_id + b"\x04" + (828).to_bytes(2, "little")
    assert peer.server.payload_size(header + (16).to_bytes(4, "little")) == 16
    assert peer.server.payload_size(header + v4s.MAX_RECORD_PAYLOAD.to_bytes(4, "little")) == (
        v4s.MAX_RECORD_PAYLOAD
    )
    other = bytes(16) + b"\x04" + (828).to_bytes(2, "little") + (64).to_bytes(4, "little")
    for bad in (
        other,
        header + (15).to_bytes(4, "little"),
        header + (v4s.MAX_RECORD_PAYLOAD + 1).to_bytes(4, "little"),
    ):
        with pytest.raises(rec.RecordError, match=r"^bad record header$"):
            peer.server.payload_size(bad)


def test_a_send_frame_is_sealed_when_first_read() -> None:
    calls: list[int] = []

    def seal() -> bytes:
        calls.append(1)
        return b"sealed"

    frame = v4s.SendFrame(None, 1604, seal)
    assert repr(frame) == "SendFrame(code=1604, sealed=False)"
    assert frame.frame == frame.frame == b"sealed"
    assert calls == [1]
    assert repr(frame) == "SendFrame(code=1604, sealed=True)"
