"""The version-4 connection (server/eft_server/connection_v4.py), run in this process
over a loopback socket with a wire-level peer (``tests.v4.wire_client``): what it
carries out for the session's effects — the file committed and recorded, requests and
ciphertext counted per code, a cut upload kept resumable, a storage failure answered
with error 7 and its upload discarded, a bad record closed silently and counted, and
its record buffer given back whatever the end."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pytest

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import records as rec
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import hello_header
from eft_server.file_store import LocalUnfinishedUpload
from eft_server.storage import StorageError
from tests.v4.wire_client import WireV4, meta_plaintext, new_upload_id

from .in_process_server import captured_logs, events, make_context, serve_one, value

ACK, RECEIVED, ERROR = ResponseCode.ACKNOWLEDGED, ResponseCode.FILE_RECEIVED, 1607
DATA = random.Random(44).randbytes(rec.CHUNK + 3)  # two chunks


def _all_buffers_free(context: Any) -> bool:
    """Every record buffer can be taken again (then given back)."""
    pool = context.record_buffers
    taken = [pool.take_now() for _ in range(4)]
    free = all(buffer is not None for buffer in taken)
    for buffer in taken:
        if buffer is not None:
            pool.give_back(buffer)
    return free


def test_a_file_is_committed_recorded_and_counted(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> tuple[bytes, list[tuple[int, bytes]]]:
        peer = WireV4(address)
        peer.register("alice")
        answers = [peer.meta(7, len(DATA), new_upload_id(), "m.bin")]
        peer.chunks(7, DATA)
        answers.append(peer.response())
        answers.append(peer.verdict(RequestCode.CRC_OK, 7))
        peer.close()
        return peer.client_id, answers

    with captured_logs() as logs:
        (client_id, answers), connection = serve_one(context, client)
    digest = file_digest(DATA).digest()
    assert answers == [
        (ACK, rec.encode_resume(7, 1)),
        (RECEIVED, rec.encode_received(7, len(DATA), digest)),
        (ACK, rec.encode_file_id(7)),
    ]
    stored = tmp_path / "data" / "v4" / "files" / client_id.hex() / "m.bin"
    assert stored.read_bytes() == DATA
    record = context.registry.file_v4(client_id, "m.bin")
    assert record is not None and record.size == len(DATA) and record.digest == digest
    assert Path(record.path) == stored
    # The metadata and two chunks are 828s; the verdict a 900.
    assert value(context, "eft_requests_total", code="828", version="4") == 3
    assert value(context, "eft_requests_total", code="900", version="4") == 1
    assert value(context, "eft_received_ciphertext_bytes_total", version="4") > len(DATA)
    assert value(context, "eft_responses_total", code=str(int(ACK)), version="4") == 2
    assert value(context, "eft_connections_total", version="4") == 1
    assert value(context, "eft_connections_active") == 0
    transfers = [entry for entry in logs if entry["event"] == "transfer"]
    assert [entry["outcome"] for entry in transfers] == ["received", "verified"]
    assert context.sessions[(4, client_id)] == 0
    assert connection.authenticated
    assert _all_buffers_free(context)


def test_a_connection_cut_mid_upload_keeps_it_resumable(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    upload_id = new_upload_id()

    key = KeyPair.generate()

    def cut(address: str) -> None:
        peer = WireV4(address, key)
        peer.register("bob")
        assert peer.meta(1, len(DATA), upload_id, "r.bin")[0] == ACK
        peer.chunks(1, DATA, 1, 1)  # the first chunk whole,
        record = peer.record(RequestCode.SEND_FILE, bytes(rec.CHUNK // 2))
        peer.send(record[: len(record) // 2])  # then half a record: a buffer held
        peer.close()

    serve_one(context, cut)
    parts = sorted((tmp_path / "data" / "v4" / "partial").rglob("*.part"))
    assert len(parts) == 1, "the unfinished upload is kept"
    assert _all_buffers_free(context)

    def resume(address: str) -> tuple[int, bytes]:
        peer = WireV4(address, key)
        peer.login("bob")
        answer = peer.meta(1, len(DATA), upload_id, "r.bin")
        peer.close()
        return answer

    answer, _ = serve_one(context, resume)
    assert answer[0] == ACK
    assert answer[1] == rec.encode_resume(1, 2), "resumed after the chunk kept"


def test_a_storage_failure_is_error_7_and_the_upload_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "data")

    async def full(self: Any, index: int, data: Any) -> None:
        raise StorageError("no room") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalUnfinishedUpload, "write", full)

    # More than the sockets' buffers hold: after its answer the server must read and
    # drop the rest (it lingers), or its close would reset the connection and the
    # answer could be lost unread.
    data = bytes(32 * rec.CHUNK)

    def client(address: str) -> tuple[int, bool]:
        peer = WireV4(address)
        peer.register("carol")
        assert peer.meta(1, len(data), new_upload_id(), "f.bin")[0] == ACK
        peer.chunks(1, data)  # every chunk after the first fails: read and dropped
        code, plaintext = peer.response()
        assert code == ERROR
        number = rec.decode_error(plaintext)[0]
        closed = peer.closed_by_server()
        peer.close()
        return number, closed

    with captured_logs() as logs:
        (number, closed), _ = serve_one(context, client)
    assert (number, closed) == (rec.ErrorCode.STORAGE, True)
    assert not list((tmp_path / "data" / "v4").rglob("*.part")), "discarded"
    assert not list((tmp_path / "data" / "v4" / "files").rglob("f.bin"))
    assert any(entry["log_level"] == "error" for entry in logs), "an operator must see it"
    assert _all_buffers_free(context)


def test_a_record_under_another_client_id_is_closed_silently_and_counted(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> bool:
        peer = WireV4(address)
        peer.register("dora")
        plaintext = meta_plaintext(1, 5, bytes(16), "t")
        peer.send(peer.record(RequestCode.SEND_FILE, plaintext, client_id=bytes(16)))
        closed = peer.closed_by_server()
        peer.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    refused = [entry for entry in logs if entry["event"] == "connection_refused_v4"]
    assert [entry["reason"] for entry in refused] == ["bad_record"]
    assert value(context, "eft_protocol_errors_total", reason="bad_record", version="4") == 1
    assert "connection_closed" in events(logs)
    assert _all_buffers_free(context)


def test_a_second_session_beyond_the_limit_is_refused_and_counted(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", max_sessions_per_client=0)

    def client(address: str) -> bool:
        peer = WireV4(address)
        peer.hello()
        peer.send(peer.message_3("erin"))
        try:
            peer.response()  # the 1600 may come before the limit is checked
        except ConnectionError:
            return True
        closed = peer.closed_by_server()
        peer.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [entry["reason"] for entry in rejected] == ["too_many_sessions"]
    assert value(context, "eft_protocol_errors_total", reason="too_many_sessions", version="4")
    assert sum(context.sessions.values()) == 0


def test_a_payload_that_does_not_come_in_time_is_a_read_timeout(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", read_timeout=0.05)

    def client(address: str) -> bool:
        peer = WireV4(address)
        peer.send(hello_header())  # message 1's header; its payload never comes
        closed = peer.closed_by_server()
        peer.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    timeouts = [entry for entry in logs if entry["event"] == "connection_timeout"]
    assert [entry["kind"] for entry in timeouts] == ["read"]
    assert value(context, "eft_connection_timeouts_total", kind="read") == 1
    assert _all_buffers_free(context)
