"""Several files in flight (feature STREAM, docs/PROTOCOL-v4.md section 8.1), in memory:
the window, the group commit before any answer, a differing digest, a refused file's
data drained, and a peer without the feature kept to one file at a time."""

from __future__ import annotations

from typing import Any

import pytest

from eft_protocol.codes import ResponseCode
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import FEATURE_NEXT_KEY, FEATURE_STREAM, FEATURE_WIDE_WINDOW, Offer
from tests.v4.test_v4_vectors import Scenario

CLIENT_ID_SIZE = 16


class StreamDriver:
    """The server's driver as ``connection_v4`` carries STREAM out: staged files become
    durable at ``CommitGroup``; an answer sent before its file is durable fails here."""

    def __init__(self, server: v4s.ServerSessionV4) -> None:
        self.server = server
        self.data: dict[int, bytearray] = {}
        self.open: tuple[int, str] | None = None  # (file id, name)
        self.staged: list[tuple[str, bytes]] = []
        self.durable: dict[str, bytes] = {}
        self.groups: list[int] = []
        self.out: list[bytes] = []
        self.closed = False

    def feed(self, frame: bytes) -> None:
        self.server.payload_size(frame[:23])
        self.apply(self.server.receive(frame[:23], frame[23:], now=0.0))

    def apply(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, v4s.OpenUpload):
                assert effect.stream
                self.open = (self.server._upload.file_id, effect.name)  # type: ignore[union-attr]
                self.data[self.open[0]] = bytearray()
                self.apply(self.server.upload_ready(0))
            elif isinstance(effect, v4s.WriteChunk):
                assert self.open is not None
                self.data[self.open[0]] += bytes(effect.data)
            elif isinstance(effect, v4s.FinishUpload):
                assert effect.stream and self.open is not None
                digest = file_digest(bytes(self.data[self.open[0]])).digest()
                self.apply(self.server.upload_complete(digest, now=0.0))
            elif isinstance(effect, v4s.StageUpload):
                assert self.open is not None
                self.staged.append((effect.name, bytes(self.data.pop(self.open[0]))))
                self.open = None
            elif isinstance(effect, v4s.DiscardUpload):
                if self.open is not None:
                    self.data.pop(self.open[0], None)
                self.open = None
            elif isinstance(effect, v4s.CommitGroup):
                self.groups.append(len(self.staged))
                self.durable.update(self.staged)
                self.staged = []
            elif isinstance(effect, v4s.SendFrame):
                if effect.code == ResponseCode.FILE_RECEIVED:
                    assert not self.staged, "an answer before its group is durable"
                self.out.append(effect.frame)
            elif isinstance(effect, v4s.Close):
                self.closed = True

    def take(self) -> list[bytes]:
        out, self.out = self.out, []
        return out


def _handshaken(
    *, server_stream: bool = True, offer_stream: bool = True, offer_wide: bool = True
) -> Scenario:
    scenario = Scenario()
    if not server_stream:
        scenario.server._stream = False
    if not offer_stream:  # WIDE_WINDOW still offered: meaningless without STREAM
        scenario.client.offer = Offer(features=FEATURE_NEXT_KEY | FEATURE_WIDE_WINDOW)
    elif not offer_wide:  # a client of the narrow window (64) only
        scenario.client.offer = Offer(features=FEATURE_NEXT_KEY | FEATURE_STREAM)
    scenario.to_server(scenario.client.start())
    reply = scenario.to_client(scenario.sent[0])
    scenario.to_server(reply.send[0])
    scenario.to_client(scenario.sent[0])
    assert scenario.client.ready
    return scenario


def _send(client: v4c.ClientSessionV4, name: str, data: bytes, *, last: bool) -> list[bytes]:
    frames = [client.begin_stream_file(name, len(data), bytes(16))]
    chunks = rec.chunk_count(len(data))
    for index in range(1, chunks + 1):
        piece = data[(index - 1) * rec.CHUNK : index * rec.CHUNK]
        frames.append(client.chunk_record(index, piece))
    frames.append(client.commit_if(file_digest(data).digest(), sync_now=last))
    return frames


def _read(scenario: Scenario, frames: list[bytes]) -> list[v4c.ReplyV4]:
    return [scenario.to_client(frame) for frame in frames]


def test_the_feature_is_selected_when_both_sides_have_it() -> None:
    scenario = _handshaken()
    assert scenario.client.features & FEATURE_STREAM
    assert scenario.client.features & FEATURE_WIDE_WINDOW
    assert scenario.client.stream_window == rec.WIDE_STREAM_WINDOW == scenario.server.window
    assert scenario.server.group_files == rec.WIDE_STREAM_WINDOW // 2


def test_a_client_without_the_wide_window_keeps_the_narrow_one() -> None:
    scenario = _handshaken(offer_wide=False)
    assert scenario.client.features & FEATURE_STREAM
    assert not scenario.client.features & FEATURE_WIDE_WINDOW
    assert scenario.client.stream_window == rec.STREAM_WINDOW == scenario.server.window
    assert scenario.server.group_files == v4s.GROUP_FILES == rec.STREAM_WINDOW // 2


@pytest.mark.parametrize(("server_stream", "offer_stream"), [(False, True), (True, False)])
def test_without_the_bit_on_either_side_files_go_one_at_a_time(
    server_stream: bool, offer_stream: bool
) -> None:
    scenario = _handshaken(server_stream=server_stream, offer_stream=offer_stream)
    assert scenario.client.stream_window == 0
    assert not scenario.client.features & FEATURE_WIDE_WINDOW  # dropped without STREAM
    with pytest.raises(RuntimeError):
        scenario.client.begin_stream_file("a.txt", 1, bytes(16))
    # And a STREAM metadata record sent anyway closes the connection.
    meta = rec.FileMeta(1, 1, bytes(16), "a.txt", stream=True).encode()
    frame = rec.request_record(
        scenario.client._send,  # type: ignore[arg-type]
        scenario.client.client_id,
        828,
        meta,
    )
    driver = StreamDriver(scenario.server)
    driver.feed(frame)
    assert driver.closed and not driver.out


@pytest.mark.parametrize("wide", [True, False])
def test_a_thousand_files_in_windows_are_stored_in_groups_before_any_answer(wide: bool) -> None:
    scenario = _handshaken(offer_wide=wide)
    client, driver = scenario.client, StreamDriver(scenario.server)
    files = {f"dir{i % 7}/f{i}.txt": bytes([i % 251]) * (i % 300) for i in range(1000)}
    pending = list(files.items())
    verified: list[int] = []
    while pending or client.unanswered:
        if pending and client.unanswered < client.stream_window:
            name, data = pending.pop(0)
            last = not pending or client.unanswered + 1 >= client.stream_window
            for frame in _send(client, name, data, last=last):
                driver.feed(frame)
            assert scenario.server.unanswered <= client.stream_window
            continue
        for reply in _read(scenario, driver.take()):
            if reply.file_verified:
                assert reply.file_id is not None
                verified.append(reply.file_id)
    assert verified == list(range(1, 1001))  # answered in file-id order
    assert driver.durable == files
    assert max(driver.groups) == scenario.server.group_files == client.stream_window // 2
    assert len(driver.groups) < 2 * 1000 // scenario.server.group_files
    assert scenario.server.state is v4s.ServerStateV4.IDLE


def test_a_differing_digest_discards_the_file_and_says_so() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, StreamDriver(scenario.server)
    frames = [client.begin_stream_file("x.bin", 3, bytes(16)), client.chunk_record(1, b"abc")]
    frames.append(client.commit_if(file_digest(b"abd").digest(), sync_now=True))
    for frame in frames:
        driver.feed(frame)
    replies = _read(scenario, driver.take())
    assert replies[-1].resend_file and not replies[-1].file_verified
    assert driver.durable == {} and driver.groups == [0]


def test_a_refused_streamed_file_is_drained_and_the_next_one_goes_on() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, StreamDriver(scenario.server)
    send = client._send
    assert send is not None
    # A name the server refuses (our client would not send it: built by hand).
    size = rec.CHUNK + 5
    meta = rec.FileMeta(1, size, bytes(16), "../x", stream=True).encode()
    driver.feed(rec.request_record(send, client.client_id, 828, meta))
    for index, piece in ((1, bytes(rec.CHUNK)), (2, bytes(5))):
        prefix = rec.encode_chunk_prefix(1, index, index == 2)
        driver.feed(rec.request_record(send, client.client_id, 828, prefix + piece))
    commit = rec.CommitIf(1, bytes(32), sync_now=True).encode()
    driver.feed(rec.request_record(send, client.client_id, rec.COMMIT_IF, commit))
    assert not driver.closed
    (refusal,) = driver.take()
    assert scenario.server.state is v4s.ServerStateV4.IDLE
    client._file_id = 1
    with pytest.raises(v4c.RefusedByServer) as refused:
        scenario.to_client(refusal)
    assert refused.value.error == rec.ErrorCode.BAD_FILE_NAME
    for frame in _send(client, "ok.txt", b"fine", last=True):
        driver.feed(frame)
    assert [r.file_verified for r in _read(scenario, driver.take())] == [False, False, True]
    assert driver.durable == {"ok.txt": b"fine"}


def test_a_client_that_never_reads_costs_the_server_one_group_at_most() -> None:
    """The server answers every W/2 files whatever the client does: what it holds for
    a connection (staged files, answers not sent) stays bounded."""
    scenario = _handshaken()
    group = scenario.server.group_files
    client, driver = scenario.client, StreamDriver(scenario.server)
    send = client._send
    assert send is not None
    for file_id in range(1, 201):
        meta = rec.FileMeta(file_id, 1, bytes(16), f"f{file_id}", stream=True).encode()
        driver.feed(rec.request_record(send, client.client_id, 828, meta))
        prefix = rec.encode_chunk_prefix(file_id, 1, True)
        driver.feed(rec.request_record(send, client.client_id, 828, prefix + b"z"))
        commit = rec.CommitIf(file_id, file_digest(b"z").digest()).encode()
        driver.feed(rec.request_record(send, client.client_id, rec.COMMIT_IF, commit))
        assert scenario.server.unanswered < group <= scenario.server.window
    assert not driver.closed
    assert driver.groups == [group] * (200 // group)
    assert len(driver.staged) == 200 % group  # the rest waits for more, or a sync


def test_a_lost_connection_keeps_nothing_of_a_streamed_upload() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, StreamDriver(scenario.server)
    driver.feed(client.begin_stream_file("big.bin", 2 * rec.CHUNK, bytes(16)))
    driver.feed(client.chunk_record(1, bytes(rec.CHUNK)))
    effects = scenario.server.connection_lost()
    assert any(isinstance(e, v4s.DiscardUpload) for e in effects)
    assert not any(isinstance(e, v4s.SuspendUpload) for e in effects)


def test_903_layout_round_trips_and_refuses_reserved_flags() -> None:
    commit = rec.CommitIf(7, bytes(range(32)), 2, sync_now=True)
    encoded = commit.encode()
    assert len(encoded) == 38 and rec.CommitIf.decode(encoded) == commit
    with pytest.raises(rec.RecordError):
        rec.CommitIf.decode(encoded[:4] + b"\x02" + encoded[5:])
    assert rec.decode_outcome(rec.encode_outcome(7, 1)) == (7, rec.Outcome.DIGEST_DIFFERED)
    with pytest.raises(rec.RecordError):
        rec.decode_outcome(rec.encode_outcome(7, 2))
