"""``ServerSessionV4.receive_data``: bytes in any slices, whole frames handled in order,
and a pause while storage answers."""

from __future__ import annotations

import pytest

from eft_protocol.codes import RESPONSE_HEADER, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.notices import ClosedSilently
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import file_digest

SERVER_KEY, CLIENT_KEY = KeyPair.generate(), KeyPair.generate()


def _codes(effects: list[v4s.Effect]) -> list[int]:
    return [e.code for e in effects if isinstance(e, v4s.SendFrame)]


def _to_client(client: v4c.ClientSessionV4, effects: list[v4s.Effect]) -> v4c.ReplyV4:
    frames = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    assert len(frames) == 1
    header, payload = frames[0][: RESPONSE_HEADER.size], frames[0][RESPONSE_HEADER.size :]
    assert client.payload_size(header) == len(payload)
    return client.receive(header, payload)


@pytest.mark.parametrize("piece", [13, 65536, 1 << 22])
def test_a_whole_upload_fed_in_slices(piece: int) -> None:
    server = v4s.ServerSessionV4(SERVER_KEY, MemoryRegistry())
    client = v4c.ClientSessionV4(CLIENT_KEY, "ann", register=True, check_server=lambda _: None)

    def feed(blob: bytes) -> list[v4s.Effect]:
        effects: list[v4s.Effect] = []
        for start in range(0, len(blob), piece):
            effects += server.receive_data(blob[start : start + piece], 0.0)
        return effects

    reply = _to_client(client, feed(client.start()))
    assert _to_client(client, feed(reply.send[0])).registered == client.client_id
    data = bytes(range(256)) * 5000  # two chunks
    effects = feed(client.begin_file("f.bin", len(data), bytes(16)))
    assert [type(e) for e in effects] == [v4s.OpenUpload]
    assert _to_client(client, server.upload_ready(0)).start_chunk == 1
    chunks = b"".join(
        client.chunk_record(i, data[(i - 1) * rec.CHUNK : i * rec.CHUNK]) for i in (1, 2)
    )
    digest = file_digest(data).digest()
    client.file_hashed(digest)
    effects = feed(chunks)
    assert [type(e) for e in effects] == [v4s.WriteChunk, v4s.WriteChunk, v4s.FinishUpload]
    reply = _to_client(client, server.upload_complete(digest, 1.0))
    assert reply.digest_ok
    effects = feed(reply.send[0])
    assert any(isinstance(e, v4s.CommitUpload) for e in effects)
    assert _to_client(client, effects).file_verified


def test_bytes_after_a_frame_that_waits_for_storage_wait_too() -> None:
    server = v4s.ServerSessionV4(SERVER_KEY, MemoryRegistry())
    client = v4c.ClientSessionV4(CLIENT_KEY, "bo", register=True, check_server=lambda _: None)
    reply = _to_client(client, server.receive_data(client.start(), 0.0))
    _to_client(client, server.receive_data(reply.send[0], 0.0))
    meta = client.begin_file("f.bin", 10, bytes(16))
    effects = server.receive_data(meta + bytes(23), 0.0)  # and a bad header behind it
    assert [type(e) for e in effects] == [v4s.OpenUpload]
    assert server.buffered == 23 and server.state is v4s.ServerStateV4.OPENING
    assert _codes(server.upload_ready(0)) == [ResponseCode.ACKNOWLEDGED]
    effects = server.receive_data(b"", 0.0)  # now the bad header is read: a silent close
    assert [type(e) for e in effects] == [ClosedSilently, v4s.SuspendUpload, v4s.Close]


def test_a_bad_header_in_the_stream_closes_without_a_word() -> None:
    server = v4s.ServerSessionV4(SERVER_KEY, MemoryRegistry())
    effects = server.receive_data(b"\x00" * 23, 0.0)
    assert [type(e) for e in effects] == [ClosedSilently, v4s.Close]
    assert server.state is v4s.ServerStateV4.CLOSED
    assert server.receive_data(b"more", 0.0) == []
