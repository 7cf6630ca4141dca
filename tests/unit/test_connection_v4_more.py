"""More of the version-4 connection (server/eft_server/connection_v4.py), in this
process over loopback: what its first mutation run let through — a refusal for a limit
of this server logged with its detail; a storage failure's reason and detail in the
client's error and the log; an upload another connection still holds answered "busy"
(error 5), logged, and kept for the later resume."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer_v4 as t4
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_protocol.codes import RESPONSE_HEADER, ResponseCode
from eft_protocol.noise import HandshakeState, KeyPair
from eft_protocol.v4 import handshake as hs
from eft_protocol.v4 import records as rec
from eft_protocol.v4.admission import HelloGate
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import client_id_for
from eft_server.connection_v4 import ConnectionV4
from eft_server.file_store import LocalUnfinishedUpload
from eft_server.storage import StorageError
from tests.v4.wire_client import WireV4, new_upload_id

from . import in_process_server
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


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_streamed_files_are_synced_stored_and_counted_in_one_line_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client streams small files (STREAM, the wide window); the connection syncs
    their data in batches as they are staged, stores and answers them in groups, and
    logs one ``files_streamed`` line (files, bytes) when it ends instead of a line a
    file (issue 25)."""
    monkeypatch.setenv("EFT_PACK", "0")  # STREAM's own records, not PACK's
    context = make_context(tmp_path / "data")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sources = tmp_path / "sources"
    sources.mkdir()
    rng = random.Random(46)
    files = []
    for n in range(40):
        path = sources / f"f{n:02d}.bin"
        path.write_bytes(rng.randbytes(n * 37))
        files.append(path)

    def client(address: str) -> None:
        host, _, port = address.rpartition(":")
        settings = ClientSettings(host, int(port), "olga", tmp_path / "client")
        asyncio.run(t4.run_v4(settings, files, Reporter()))

    with captured_logs() as logs:
        serve_one(context, client)
    stored = {p.name: p.read_bytes() for p in (tmp_path / "data" / "v4" / "files").rglob("*.bin")}
    assert stored == {path.name: path.read_bytes() for path in files}
    streamed = [entry for entry in logs if entry["event"] == "files_streamed"]
    total = sum(n * 37 for n in range(40))
    assert [(e["log_level"], e["files"], e["bytes"]) for e in streamed] == [("info", 40, total)]
    assert not list((tmp_path / "data" / "v4" / "partial").rglob("*.part")), "none left"
    parts = [path for path in synced if path.endswith(".part")]
    assert len(parts) == len(set(parts)) == 40, "each file's data synced once, before its rename"
    # each file's 903 (COMMIT_IF) counted under its code, not as an unknown request
    assert value(context, "eft_requests_total", code="903", version="4") == 40
    assert value(context, "eft_requests_total", code="unknown", version="4") == 0
    # each file recorded: its name, where it is, its size and digest, and the digest's name
    records = sorted(context.registry.files_v4(), key=lambda record: record.file_name)
    assert [
        (r.file_name, Path(r.path).read_bytes(), r.size, r.digest, r.algorithm) for r in records
    ] == [
        (p.name, p.read_bytes(), p.stat().st_size, file_digest(p.read_bytes()).digest(), "blake3")
        for p in files
    ]
    # the sealed 828 records' sizes, read from their headers: the data and, per file, a
    # metadata record and a chunk's prefix, each with its 16-byte tag
    received = value(context, "eft_received_ciphertext_bytes_total", version="4")
    assert total < received < total + 40 * 128


def test_the_server_hello_carries_this_server_s_settings(tmp_path: Path) -> None:
    """The size limit, whether registration is open and the next key a client must
    learn, as configured: what a client is told before it sends anything."""
    context = make_context(tmp_path / "data", max_file_size_v4=12345)
    context.open_registration = False
    context.next_static_key = KeyPair.generate()

    def client(address: str) -> hs.ServerHello:
        peer = WireV4(address)
        header = hs.hello_header()
        noise = HandshakeState(initiator=True, static=peer.key, prologue=hs.prologue(header))
        peer.send(header + noise.write_message(hs.Offer().encode()))
        _version, _code, size = RESPONSE_HEADER.unpack(peer._read_exactly(RESPONSE_HEADER.size))
        hello = hs.ServerHello.decode(noise.read_message(peer._read_exactly(size)))
        peer.close()
        return hello

    hello, _ = serve_one(context, client)
    assert (hello.max_file_size, hello.open_registration) == (12345, False)
    assert hello.next_key == context.next_static_key.public


class _SeenGate(HelloGate):
    """The server's gate, noting the address each message 1 came from."""

    def __init__(self) -> None:
        super().__init__(cookies_above=0, rate_per_address=None)  # under load: cookies
        self.addresses: list[bytes] = []

    def admit(self, address: bytes, ephemeral: bytes, cookie: bytes, now: float) -> Any:
        self.addresses.append(address)
        return super().admit(address, ephemeral, cookie, now)


def test_message_1_goes_through_the_server_s_gate_with_its_address(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    gate = context.hello_gate = _SeenGate()

    def client(address: str) -> bytes:
        peer = WireV4(address)
        header = hs.hello_header()
        noise = HandshakeState(initiator=True, static=peer.key, prologue=hs.prologue(header))
        peer.send(header + noise.write_message(hs.Offer().encode()))
        answer = peer._read_exactly(len(hs.cookie_reply_header()))
        peer.close()
        return answer

    answer, _ = serve_one(context, client)
    assert answer == hs.cookie_reply_header()  # under load: a cookie first
    assert gate.addresses == [socket.inet_pton(socket.AF_INET, "127.0.0.1")]


def test_the_handshake_deadline_counts_from_the_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that waited 10 s for a slot has used up a 5 s handshake: it is
    closed at once, not given 5 s more."""

    class AcceptedEarlier(ConnectionV4):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, accepted_at=time.monotonic() - 10)

    monkeypatch.setattr(in_process_server, "ConnectionV4", AcceptedEarlier)
    context = make_context(tmp_path / "data", handshake_timeout=5.0)

    def client(address: str) -> bool:
        peer = WireV4(address)
        peer.hello()  # message 1 answered; message 3 never comes
        closed = peer.closed_by_server()
        peer.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    (timeout,) = [entry for entry in logs if entry["event"] == "connection_timeout"]
    assert timeout["kind"] == "handshake"
    assert timeout["seconds"] <= 0, "its deadline had passed when its first bytes came"


def test_a_connection_that_streamed_only_empty_files_still_says_so(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")

    def client(address: str) -> None:
        host, _, port = address.rpartition(":")
        settings = ClientSettings(host, int(port), "pia", tmp_path / "client")
        asyncio.run(t4.run_v4(settings, [empty], Reporter()))

    with captured_logs() as logs:
        serve_one(context, client)
    streamed = [entry for entry in logs if entry["event"] == "files_streamed"]
    assert [(e["files"], e["bytes"]) for e in streamed] == [(1, 0)]
