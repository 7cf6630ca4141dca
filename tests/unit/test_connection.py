"""The version-3 connection (server/eft_server/connection.py), run in this process over
a loopback socket: what it carries out for the session's effects — the file on disk and
its record, the answers written, the requests and answers counted, rejected requests
answered 1607 and counted by reason, a storage failure cleaned up and told."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest

from eft_protocol import crypto
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import ServerError
from eft_server.storage import StorageError
from tests.support.raw_client import RawClient

from .in_process_server import captured_logs, events, make_context, serve_one, value

KEY = crypto.generate_rsa_key(random.Random(3).randbytes)  # one key: generating costs


def _client(address: str) -> RawClient:
    return RawClient(address, new_key=lambda: KEY)


def test_a_file_is_stored_recorded_and_counted(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    data = bytes(random.Random(1).randbytes(10_000))

    def client(address: str) -> bytes:
        raw = _client(address)
        raw.handshake("alice")
        raw.send_file("notes.txt", data)
        raw.close()
        return raw.client_id

    with captured_logs() as logs:
        client_id, connection = serve_one(context, client)
    record = context.registry.file(client_id, "notes.txt")
    assert record is not None and record.verified and record.size == len(data)
    assert Path(record.path).read_bytes() == data
    assert value(context, "eft_requests_total", code="825", version="3") == 1
    assert value(context, "eft_requests_total", code="826", version="3") == 1
    assert value(context, "eft_requests_total", code="828", version="3") >= 1
    assert value(context, "eft_requests_total", code="900", version="3") == 1
    for code in (ResponseCode.REGISTERED, ResponseCode.PUBLIC_KEY_ACCEPTED):
        assert value(context, "eft_responses_total", code=str(int(code)), version="3") == 1
    assert value(context, "eft_received_ciphertext_bytes_total", version="3") >= len(data)
    assert value(context, "eft_connections_total", version="3") == 1
    assert value(context, "eft_connections_active") == 0
    assert context.sessions[(3, client_id)] == 0, "its session place given back"
    names = events(logs)
    assert names[0] == "connection_opened" and names[-1] == "connection_closed"
    assert "request" in names
    assert not list((tmp_path / "data").rglob("*.tmp")), "no temporary file left"
    assert connection.writer.is_closing()


def test_a_request_with_an_unknown_code_is_answered_1607_and_the_connection_kept(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    # A header with code 999 and no payload: version 3, client id zero.
    header = bytes(16) + struct.pack("<BHI", 3, 999, 0)

    def client(address: str) -> tuple[int, int]:
        raw = _client(address)
        raw.send(header)
        refused = raw.receive()
        session = ClientSession("erin", new_key=lambda: KEY)
        raw.send(*session.start())  # the same connection still serves
        registered = raw.receive()
        raw.close()
        return int(refused.code), int(registered.code)

    with captured_logs() as logs:
        (refused, registered), _ = serve_one(context, client)
    assert (refused, registered) == (int(ServerError.code), int(ResponseCode.REGISTERED))
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [(e["reason"], e["code"], e["closing"]) for e in rejected] == [
        ("unknown_code", 999, False)
    ]
    assert value(context, "eft_protocol_errors_total", reason="unknown_code", version="3") == 1
    assert value(context, "eft_requests_total", code="unknown", version="3") == 1
    assert value(context, "eft_responses_total", code=str(int(ServerError.code)), version="3") == 1


def test_a_header_that_cannot_be_trusted_is_answered_1607_then_closed(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    header = bytes(16) + struct.pack("<BHI", 2, 825, 255)  # version 2: framing lost

    def client(address: str) -> tuple[int, bool]:
        raw = _client(address)
        raw.send(header)
        response = raw.receive()
        closed = raw.closed_by_server()
        raw.close()
        return int(response.code), closed

    with captured_logs() as logs:
        (code, closed), _ = serve_one(context, client)
    assert (code, closed) == (int(ServerError.code), True)
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [(e["reason"], e["closing"]) for e in rejected] == [("bad_version", True)]
    assert value(context, "eft_protocol_errors_total", reason="bad_version", version="3") == 1


def test_a_store_that_fails_to_open_is_answered_and_logged_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "data")

    async def refuse(*_: Any) -> Any:
        raise StorageError("the disk is full")

    monkeypatch.setattr(context.store, "open_upload", refuse)

    def client(address: str) -> int:
        raw = _client(address)
        session = raw.handshake("bob")
        sender = session.begin_file("a.txt", 100, 4096)
        raw.send(*sender.feed(bytes(100)), *sender.finish())
        response = raw.receive()
        raw.close()
        return int(response.code)

    with captured_logs() as logs:
        code, _ = serve_one(context, client)
    assert code == int(ServerError.code)
    failures = [entry for entry in logs if entry["log_level"] == "error"]
    assert failures, "an operator must see a storage failure"
    assert any("disk is full" in str(entry) for entry in failures)
    assert not list((tmp_path / "data").rglob("*.txt"))


def test_one_session_too_many_for_a_client_is_refused(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", max_sessions_per_client=0)

    def refused(address: str) -> tuple[int, bool]:
        raw = _client(address)
        session = ClientSession("carol", new_key=lambda: KEY)
        raw.send(*session.start())
        response = raw.receive()
        closed = raw.closed_by_server()
        raw.close()
        return int(response.code), closed

    (code, closed), _ = serve_one(context, refused)
    assert code == int(ServerError.code)
    assert closed
    assert value(context, "eft_protocol_errors_total", reason="too_many_sessions", version="3")
    assert sum(context.sessions.values()) == 0, "the refused session is not left counted"


def test_a_client_cut_inside_a_file_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "data")
    opened: list[Any] = []
    open_upload = context.store.open_upload

    async def watched(client_id: bytes, storage_name: str) -> Any:
        opened.append(await open_upload(client_id, storage_name))
        return opened[-1]

    monkeypatch.setattr(context.store, "open_upload", watched)

    def client(address: str) -> None:
        raw = _client(address)
        session = raw.handshake("dora")
        sender = session.begin_file("big.bin", 100_000, 4096)
        frames = sender.feed(bytes(100_000))
        raw.send(frames[0], frames[1][:10])  # a packet, then half a header's worth
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [entry["reason"] for entry in rejected] == ["truncated"]
    assert value(context, "eft_protocol_errors_total", reason="truncated", version="3") == 1
    assert len(opened) == 1, "the first packet opened the upload"
    leftovers = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.suffix != ".db"]
    assert leftovers == [], "its temporary file was discarded"
    assert value(context, "eft_connections_active") == 0
