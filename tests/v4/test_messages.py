"""The file messages of the revised version 4, in memory: UTF-8 paths, the digest's
algorithm in the metadata and in 1603, and the refusals that come before any data (no
space, a name in the way) with the session going on. Plus the message vectors of
docs/PROTOCOL-v4.md section 6 (``messages`` in eft_v4_vectors.json)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.errors import ResponseError
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest, hasher_for
from eft_protocol.v4.pack import (
    PACK,
    PACK_ANSWER,
    Refusal,
    decode_answer,
    decode_pack,
    encode_answer,
    encode_pack,
)
from tests.v4.test_v4_vectors import VECTORS, Scenario, _replay

WELCOMED = 4  # frames up to the 1600: both sides are ready for files


def _ready() -> Scenario:
    scenario, _ = _replay(WELCOMED)
    assert scenario.client.ready
    return scenario


def _to_server(scenario: Scenario, frame: bytes, **ready: Any) -> list[Any]:
    """The frame to the server; ``ready`` is what the driver measured (room, conflict)."""
    effects = scenario.server.receive(frame[:23], frame[23:], now=0.0)
    for effect in list(effects):
        if isinstance(effect, v4s.OpenUpload):
            effects += scenario.server.upload_ready(0, **ready)
    scenario.sent = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    return effects


def _error(scenario: Scenario) -> tuple[int, str]:
    (frame,) = scenario.sent
    with pytest.raises(v4c.RefusedByServer) as refused:
        scenario.to_client(frame)
    return refused.value.error, str(refused.value)


def test_a_utf8_path_travels_in_nfc_and_is_committed_under_that_name() -> None:
    scenario = _ready()
    data = b"bonjour"
    decomposed = "photos/2024/re\u0301sume\u0301 1.pdf"
    effects = _to_server(scenario, scenario.client.begin_file(decomposed, len(data), bytes(16)))
    (opened,) = [e for e in effects if isinstance(e, v4s.OpenUpload)]
    assert opened.name == "photos/2024/résumé 1.pdf"
    assert scenario.to_client(scenario.sent[0]).start_chunk == 1
    effects = scenario.server.receive(*_split(scenario.client.chunk_record(1, data)), now=0.0)
    assert any(isinstance(e, v4s.FinishUpload) for e in effects)
    digest = file_digest(data).digest()
    scenario.client.file_hashed(digest)
    (received,) = [
        e.frame
        for e in scenario.server.upload_complete(digest, 0.0)
        if isinstance(e, v4s.SendFrame)
    ]
    reply = scenario.to_client(received)
    assert reply.digest_ok
    effects = _to_server(scenario, reply.send[0])
    (commit,) = [e for e in effects if isinstance(e, v4s.CommitUpload)]
    assert (commit.name, commit.digest_algorithm) == ("photos/2024/résumé 1.pdf", 1)


def _split(frame: bytes) -> tuple[bytes, bytes]:
    return frame[:23], frame[23:]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (b"../x", "'..' component"),
        (b"/abs", "absolute"),
        (b"a\\b", "backslash"),
        (b"a//b", "empty component"),
        (b"a\x00b", "control character U+0000"),
        (b"caf\xe9", "not valid UTF-8"),
        (b"nul.txt", "device name"),
    ],
)
def test_a_hostile_name_is_refused_with_its_own_message_and_the_session_goes_on(
    name: bytes, words: str
) -> None:
    scenario = _ready()
    meta = _raw_meta(1, 5, name)
    _to_server(scenario, _seal(scenario, meta))
    error, message = _sealed_error(scenario)
    assert error == rec.ErrorCode.BAD_FILE_NAME and words in message
    assert scenario.server.state is v4s.ServerStateV4.IDLE


def _raw_meta(file_id: int, size: int, name: bytes, algorithm: int = 1) -> bytes:
    return (
        rec.encode_chunk_prefix(file_id, 0, False)
        + size.to_bytes(8, "little")
        + bytes(16)
        + bytes([algorithm])
        + len(name).to_bytes(2, "little")
        + name
    )


def _seal(scenario: Scenario, plaintext: bytes, code: int = RequestCode.SEND_FILE) -> bytes:
    """A record from the client's keys, bypassing its checks (a raw client)."""
    client = scenario.client
    assert client._send is not None
    return rec.request_record(client._send, client.client_id, code, plaintext)


def _sealed_error(scenario: Scenario) -> tuple[int, str]:
    (frame,) = scenario.sent
    client = scenario.client
    assert client._recv is not None
    plaintext = client._recv.open(frame[:7], frame[7:])
    assert int.from_bytes(frame[1:3], "little") == ResponseCode.SERVER_ERROR
    return rec.decode_error(plaintext)


def test_an_unknown_digest_algorithm_is_refused_by_name_not_mismatched() -> None:
    scenario = _ready()
    _to_server(scenario, _seal(scenario, _raw_meta(1, 5, b"f.txt", algorithm=99)))
    error, message = _sealed_error(scenario)
    assert error == rec.ErrorCode.UNKNOWN_DIGEST and "unknown digest algorithm 99" in message
    assert scenario.server.state is v4s.ServerStateV4.IDLE


def test_sha256_is_there_for_peers_without_blake3() -> None:
    scenario = _ready()
    data = b"hello"
    frame = scenario.client.begin_file("f.txt", len(data), bytes(16), DigestAlgorithm.SHA256)
    effects = _to_server(scenario, frame)
    (opened,) = [e for e in effects if isinstance(e, v4s.OpenUpload)]
    assert opened.digest_algorithm == DigestAlgorithm.SHA256
    scenario.to_client(scenario.sent[0])
    scenario.server.receive(*_split(scenario.client.chunk_record(1, data)), now=0.0)
    digest = hashlib.sha256(data).digest()
    assert hasher_for(DigestAlgorithm.SHA256).digest() == hashlib.sha256().digest()
    scenario.client.file_hashed(digest)
    (received,) = [
        e.frame
        for e in scenario.server.upload_complete(digest, 0.0)
        if isinstance(e, v4s.SendFrame)
    ]
    assert scenario.to_client(received).digest_ok


def test_a_1603_with_another_algorithm_is_an_error_never_a_mismatch() -> None:
    scenario = _ready()
    data = b"hello"
    _to_server(scenario, scenario.client.begin_file("f.txt", len(data), bytes(16)))
    scenario.to_client(scenario.sent[0])
    scenario.server.receive(*_split(scenario.client.chunk_record(1, data)), now=0.0)
    scenario.client.file_hashed(file_digest(data).digest())
    upload = scenario.server._upload
    assert upload is not None
    upload.digest_algorithm = DigestAlgorithm.SHA256  # a server that answers otherwise
    (received,) = [
        e.frame
        for e in scenario.server.upload_complete(hashlib.sha256(data).digest(), 0.0)
        if isinstance(e, v4s.SendFrame)
    ]
    with pytest.raises(ResponseError, match="unknown algorithm 2"):
        scenario.to_client(received)


def test_no_space_is_said_before_any_data_and_the_session_goes_on() -> None:
    scenario = _ready()
    effects = _to_server(
        scenario, scenario.client.begin_file("big.bin", 5000, bytes(16)), room=4999
    )
    assert any(isinstance(e, v4s.DiscardUpload) for e in effects)
    error, message = _error(scenario)
    assert error == rec.ErrorCode.NO_SPACE
    assert "needs 5000 more bytes" in message and "room for 4999" in message
    assert scenario.client.state is v4c.ClientStateV4.OPENING  # the driver ends the run
    assert scenario.server.state is v4s.ServerStateV4.IDLE


def test_a_file_that_fits_exactly_is_accepted() -> None:
    scenario = _ready()
    _to_server(scenario, scenario.client.begin_file("fits.bin", 5000, bytes(16)), room=5000)
    assert scenario.to_client(scenario.sent[0]).start_chunk == 1


def test_a_resumed_upload_needs_room_only_for_what_is_missing() -> None:
    scenario = _ready()
    size = 3 * rec.CHUNK
    frame = scenario.client.begin_file("resumed.bin", size, bytes(16))
    effects = scenario.server.receive(*_split(frame), now=0.0)
    assert any(isinstance(e, v4s.OpenUpload) for e in effects)
    effects = scenario.server.upload_ready(2, room=rec.CHUNK)  # two chunks are on disk
    assert [type(e) for e in effects if not isinstance(e, v4s.Notice)] == [v4s.SendFrame]
    assert scenario.server.state is v4s.ServerStateV4.UPLOADING


def test_a_resumed_upload_refused_for_room_is_kept_for_later() -> None:
    scenario = _ready()
    frame = scenario.client.begin_file("resumed.bin", 3 * rec.CHUNK, bytes(16))
    scenario.server.receive(*_split(frame), now=0.0)
    effects = scenario.server.upload_ready(1, room=0)
    assert any(isinstance(e, v4s.SuspendUpload) for e in effects)
    assert not any(isinstance(e, v4s.DiscardUpload) for e in effects)


def test_a_name_in_the_way_is_a_bad_name_before_any_data() -> None:
    scenario = _ready()
    frame = scenario.client.begin_file("photos/a.jpg", 5, bytes(16))
    _to_server(scenario, frame, conflict="photos is a file on the server, not a folder")
    error, message = _error(scenario)
    assert error == rec.ErrorCode.BAD_FILE_NAME and "photos is a file" in message
    assert v4c.RefusedByServer(error, message).decision is v4c.Decision.BAD_FILE_NAME


def test_no_space_and_over_quota_are_the_clients_no_room_decision() -> None:
    for error in (rec.ErrorCode.NO_SPACE, rec.ErrorCode.OVER_QUOTA):
        assert v4c.RefusedByServer(error, "").decision is v4c.Decision.NO_ROOM


# --- the message vectors -------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", VECTORS["messages"], ids=[m["label"] for m in VECTORS["messages"]]
)
def test_the_message_vectors(vector: dict[str, Any]) -> None:
    fields, plaintext = vector["fields"], bytes.fromhex(vector["plaintext"])
    if vector["code"] == RequestCode.SEND_FILE:
        meta = rec.FileMeta(
            fields["file_id"],
            fields["file_size"],
            bytes.fromhex(fields["upload_id"]),
            fields["name"],
            fields["digest_algorithm"],
        )
        assert meta.encode() == plaintext
        assert rec.decode_file_record(plaintext) == meta
    elif vector["code"] == ResponseCode.FILE_RECEIVED:
        values = (
            fields["file_id"],
            fields["file_size"],
            fields["digest_algorithm"],
            bytes.fromhex(fields["digest"]),
        )
        assert rec.encode_received(values[0], values[1], values[3], values[2]) == plaintext
        assert rec.decode_received(plaintext) == values
    elif vector["code"] == PACK:
        files = [
            (f["name"].encode(), bytes.fromhex(f["digest"]), bytes.fromhex(f["data"]))
            for f in fields["files"]
        ]
        first, sync_now = fields["first_file_id"], fields["sync_now"]
        assert encode_pack(first, fields["digest_algorithm"], files, sync_now=sync_now) == plaintext
        pack = decode_pack(plaintext)
        assert (pack.first_file_id, pack.sync_now) == (first, sync_now)
        assert [(f.name.encode(), f.digest, bytes(f.data)) for f in pack.files] == files
    elif vector["code"] == PACK_ANSWER:
        outcomes = [
            o if isinstance(o, int) else Refusal(o["error"], o["message"])
            for o in fields["outcomes"]
        ]
        assert encode_answer(fields["first_file_id"], outcomes) == plaintext
        assert decode_answer(plaintext) == (fields["first_file_id"], outcomes)
    else:
        assert vector["code"] == ResponseCode.SERVER_ERROR
        assert rec.encode_error(fields["error"], fields["message"]) == plaintext
        assert rec.decode_error(plaintext) == (fields["error"], fields["message"])
