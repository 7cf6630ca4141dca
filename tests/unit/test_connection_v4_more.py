"""More of the version-4 connection (server/eft_server/connection_v4.py), in this
process over loopback: what its first mutation run let through — a refusal for a limit
of this server logged with its detail; a storage failure's reason and detail in the
client's error and the log; an upload another connection still holds answered "busy"
(error 5), logged, and kept for the later resume."""

from __future__ import annotations

import asyncio
import errno
import random
from pathlib import Path
from typing import Any

import pytest

from eft_protocol.codes import ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import records as rec
from eft_protocol.v4.handshake import client_id_for
from eft_server.file_store import LocalUnfinishedUpload
from eft_server.storage import StorageError
from tests.v4.wire_client import WireV4, new_upload_id

from .in_process_server import captured_logs, make_context, serve_one, value

ACK, ERROR = ResponseCode.ACKNOWLEDGED, 1607
DATA = random.Random(45).randbytes(rec.CHUNK + 3)  # two chunks


def test_a_session_beyond_the_limit_is_logged_with_its_detail(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", max_sessions_per_client=0)

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.hello()
        peer.send(peer.message_3("erin"))
        peer.closed_by_server()
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [(e["reason"], e["detail"], e["log_level"]) for e in rejected] == [
        ("too_many_sessions", "client already has 0 connections open", "warning")
    ]
    assert value(context, "eft_protocol_errors_total", reason="too_many_sessions", version="4")


def test_a_storage_failure_tells_the_client_and_the_log_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "data")

    async def full(self: Any, index: int, data: Any) -> None:
        raise StorageError("no room") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalUnfinishedUpload, "write", full)

    def client(address: str) -> tuple[int, str]:
        peer = WireV4(address)
        peer.register("lena")
        assert peer.meta(1, len(DATA), new_upload_id(), "f.bin")[0] == ACK
        peer.chunks(1, DATA, 1, 1)
        code, plaintext = peer.response()
        assert code == ERROR
        peer.close()
        return rec.decode_error(plaintext)

    with captured_logs() as logs:
        (number, message), _ = serve_one(context, client)
    why = "No space left on device (ENOSPC)"
    assert (number, message) == (rec.ErrorCode.STORAGE, f"the server could not store it: {why}")
    failed = [entry for entry in logs if entry["event"] == "storage_failed"]
    assert [(e["log_level"], e["reason"], e["detail"]) for e in failed] == [
        ("error", "StorageError", why)
    ]


def test_an_upload_still_open_on_another_connection_is_answered_busy_and_kept(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    key = KeyPair.generate()
    upload_id = new_upload_id()
    partials = context.partials
    assert partials is not None
    # The other connection's upload, still open (it has not noticed its break).
    held = asyncio.run(partials.open(client_id_for(key.public), upload_id, "b.bin", len(DATA), 1))

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address, key)
        peer.register("mona")
        answer = peer.meta(1, len(DATA), upload_id, "b.bin")
        peer.close()
        return answer

    with captured_logs() as logs:
        (code, plaintext), _ = serve_one(context, client)
    assert code == ERROR
    assert rec.decode_error(plaintext) == (
        rec.ErrorCode.BUSY,
        "the upload is busy on another connection",
    )
    busy = [entry for entry in logs if entry["event"] == "upload_busy"]
    assert [(e["log_level"], e["error"]) for e in busy] == [
        ("warning", "this upload is still open on another connection")
    ]
    failed = [entry for entry in logs if entry["event"] == "storage_failed"]
    assert [(e["reason"], e["detail"]) for e in failed] == [("busy", "busy")]
    assert len(list((tmp_path / "data" / "v4" / "partial").rglob("*.part"))) == 1, "kept"
    asyncio.run(held.suspend())
