"""More of the one connection loop (server/eft_server/driver.py), in this process over
loopback: a connection calls its ``on_authenticated`` hook (the slots' "never shed")
once, when it first speaks for a client, counts against that client's limit with its
other connections, names the client in every later log line, and the registered
clients' gauge follows a registration; how a connection ends is logged as operators
read it (a cut inside a frame is ``connection_lost``, a close between two requests is
not, a reset is; a read timeout with its limit, a record too slow with what came of it;
a registry write that failed, or a registry out of reach, with its cause); a notice a
flood makes one of per message is logged at debug level with its fields, the others at
info; the handshake deadline counts from the accept."""

from __future__ import annotations

import random
import socket
import sqlite3
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from eft_protocol import crypto
from eft_protocol.codes import RequestCode
from eft_protocol.noise import HandshakeState, KeyPair
from eft_protocol.v4 import server as v4
from eft_protocol.v4.admission import HelloGate
from eft_protocol.v4.handshake import Offer, client_id_for, hello_header, prologue
from eft_server.connection import Connection
from eft_server.connection_v4 import ConnectionV4
from eft_server.frame_reader import RecordBuffers
from tests.support.raw_client import RawClient
from tests.v4.wire_client import WireV4

from . import in_process_server
from .in_process_server import captured_logs, events, make_context, serve_one, value
from .test_driver import FailingFlush, Unreachable, _register

KEY = crypto.generate_rsa_key(random.Random(5).randbytes)  # one key: generating costs


def _watch_authentication(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each call of a served connection's ``on_authenticated``, with whether the
    connection already counted as authenticated then."""
    calls: list[bool] = []

    def watched(base: type[Any]) -> type[Any]:
        class Watched(base):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.on_authenticated = lambda: calls.append(self.authenticated)

        return Watched

    monkeypatch.setattr(in_process_server, "Connection", watched(Connection))
    monkeypatch.setattr(in_process_server, "ConnectionV4", watched(ConnectionV4))
    return calls


def test_a_v3_connection_is_authenticated_once_and_the_client_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _watch_authentication(monkeypatch)
    context = make_context(tmp_path / "data")

    def client(address: str) -> bytes:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.handshake("alice")  # 825 then 826: two notices that name the client
        raw.close()
        return raw.client_id

    client_id, connection = serve_one(context, client)
    assert calls == [True], "called once, after the connection speaks for its client"
    assert connection.authenticated
    assert value(context, "eft_registered_clients") == 1
    assert context.sessions[(3, client_id)] == 0


def test_a_v4_connection_is_authenticated_once_and_the_client_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _watch_authentication(monkeypatch)
    context = make_context(tmp_path / "data")

    def client(address: str) -> bytes:
        peer = WireV4(address)
        peer.register("bob")
        peer.close()
        return peer.client_id

    client_id, connection = serve_one(context, client)
    assert calls == [True]
    assert connection.authenticated
    assert value(context, "eft_registered_clients") == 1
    assert context.sessions[(4, client_id)] == 0


def test_a_connection_that_never_speaks_for_a_client_is_not_authenticated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _watch_authentication(monkeypatch)
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.hello()
        peer.close()

    _, connection = serve_one(context, client)
    assert calls == []
    assert not connection.authenticated
    assert value(context, "eft_registered_clients") == 0
    assert sum(context.sessions.values()) == 0


def _ended(context: Any, cut: int | None) -> list[Any]:
    """The log of a version-4 connection whose client registers, then sends the first
    ``cut`` bytes of a record and closes (None: closes between two records)."""

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register(f"carol{cut}")
        if cut is not None:
            peer.send(peer.record(RequestCode.SEND_FILE, bytes(5000))[:cut])
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    assert events(logs)[-1] == "connection_closed"
    return [entry for entry in logs if entry["event"] == "connection_lost"]


@pytest.mark.parametrize("cut", [10, 23, 40], ids=["in_the_header", "after_it", "in_the_payload"])
def test_a_client_gone_inside_a_frame_is_logged_as_lost(tmp_path: Path, cut: int) -> None:
    lost = _ended(make_context(tmp_path / "data"), cut)
    assert len(lost) == 1
    assert lost[0]["log_level"] == "info"
    assert "bytes read" in lost[0]["error"]  # IncompleteReadError's own words


def test_a_client_that_closes_between_two_requests_is_not_lost(tmp_path: Path) -> None:
    assert _ended(make_context(tmp_path / "data"), None) == []


def test_a_v3_client_that_closes_between_two_requests_is_not_lost(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.handshake("dave")
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    names = events(logs)
    assert "connection_lost" not in names
    assert names[0] == "connection_opened" and names[-1] == "connection_closed"


def test_a_flood_kind_of_notice_is_logged_at_debug_and_the_others_at_info(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register("erin")
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    level = {entry["event"]: entry["log_level"] for entry in logs}
    assert level["hello_answered"] == "debug"  # one per message 1: a flood's
    assert level["registered"] == "info"
    assert level["connection_opened"] == level["connection_closed"] == "info"


def test_a_registry_write_that_fails_is_logged_with_its_cause(tmp_path: Path) -> None:
    registry = FailingFlush(sqlite3.OperationalError("disk I/O error"))
    context = make_context(tmp_path / "data", registry=registry)
    with captured_logs() as logs:
        serve_one(context, _register)
    failed = [entry for entry in logs if entry["event"] == "storage_failed"]
    assert [(entry["log_level"], entry["detail"]) for entry in failed] == [
        ("error", "the registry could not be written: disk I/O error")
    ]


def test_a_read_timeout_is_logged_with_its_limit_to_the_millisecond(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", read_timeout=0.0504)

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
    assert [(entry["kind"], entry["seconds"]) for entry in timeouts] == [("read", 0.05)]


def test_a_record_that_comes_too_slowly_is_cut_counted_and_logged(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    # No grace and a rate no loopback trickle keeps: the record is cut at once.
    context.record_buffers = RecordBuffers(4, v4.MAX_RECORD_PAYLOAD, min_rate=1e9, grace=0.0)

    def client(address: str) -> tuple[bool, int]:
        peer = WireV4(address)
        peer.register("fred")
        record = peer.record(RequestCode.SEND_FILE, bytes(200_000))
        peer.send(record[:1000])  # the header and a few bytes, then nothing
        closed = peer.closed_by_server()
        peer.close()
        return closed, len(record) - 23

    with captured_logs() as logs:
        (closed, size), _ = serve_one(context, client)
    assert closed
    (slow,) = [entry for entry in logs if entry["event"] == "connection_timeout"]
    assert slow["kind"] == "record_rate" and slow["log_level"] == "info"
    assert 0 < slow["received"] <= 1000 - 23 and slow["size"] == size
    assert isinstance(slow["seconds"], float)
    assert value(context, "eft_connection_timeouts_total", kind="record_rate") == 1
    assert value(context, "eft_connection_timeouts_total", kind="read") == 0


def test_a_client_with_a_connection_open_elsewhere_is_held_to_its_limit(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", max_sessions_per_client=1)
    key = KeyPair.generate()
    client_id = client_id_for(key.public)
    context.sessions[(4, client_id)] = 1  # its other connection, still open

    def client(address: str) -> bool:
        peer = WireV4(address, key)
        peer.hello()
        peer.send(peer.message_3("gina"))
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
    assert [(entry["reason"], entry["detail"]) for entry in rejected] == [
        ("too_many_sessions", "client already has 1 connections open")
    ]
    assert context.sessions[(4, client_id)] == 1, "the other connection still counted"


def test_a_client_may_hold_as_many_connections_as_its_limit(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", max_sessions_per_client=2)
    key = KeyPair.generate()
    context.sessions[(4, client_id_for(key.public))] = 1  # its other connection

    def client(address: str) -> None:
        peer = WireV4(address, key)
        peer.register("ivan")  # answered 1600, the connection kept
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    assert "request_rejected" not in events(logs)
    assert context.sessions[(4, client_id_for(key.public))] == 1


def _logged_with_context(context: Any, name: str) -> tuple[str, str, list[Any]]:
    """A version-4 registration's log lines with their bound context (connection, peer,
    version, client id), as the server's JSON lines carry them; and the client's address."""

    def client(address: str) -> tuple[bytes, str]:
        peer = WireV4(address)
        peer.register(name)
        peer.close()
        return peer.client_id, peer.local

    capture = structlog.testing.LogCapture()
    saved = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    try:
        (client_id, local), _ = serve_one(context, client)
    finally:
        structlog.configure(**saved)
    return client_id.hex(), local, capture.entries


def test_every_line_names_its_connection_and_peer_and_later_ones_the_client(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    client_id, local, entries = _logged_with_context(context, "hank")
    named = {entry["event"]: entry.get("client_id") for entry in entries}
    assert named["connection_opened"] is None
    assert named["registered"] == named["connection_closed"] == client_id
    assert {(entry["peer"], entry["version"]) for entry in entries} == {(local, 4)}
    (connection,) = {entry["connection"] for entry in entries}
    _, _, others = _logged_with_context(context, "hank2")
    assert {entry["connection"] for entry in others} == {connection + 1}, "one id each, in order"


def test_the_handshake_deadline_counts_from_the_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that waited 10 s for a slot has used up a 5 s handshake: it is
    closed at once, not given 5 s more."""

    class AcceptedEarlier(Connection):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, accepted_at=time.monotonic() - 10)

    monkeypatch.setattr(in_process_server, "Connection", AcceptedEarlier)
    context = make_context(tmp_path / "data", handshake_timeout=5.0)

    def client(address: str) -> bool:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.send(bytes(16) + struct.pack("<BHI", 3, 825, 255))  # its payload never comes
        closed = raw.closed_by_server()
        raw.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    (timeout,) = [entry for entry in logs if entry["event"] == "connection_timeout"]
    assert timeout["kind"] == "handshake"
    assert timeout["seconds"] <= 0, "its deadline had passed when its first bytes came"


def test_a_quiet_notice_keeps_its_fields(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    context.hello_gate = HelloGate(cookies_above=0, rate_per_address=None)  # under load

    def client(address: str) -> None:
        peer = WireV4(address)
        header = hello_header()
        noise = HandshakeState(initiator=True, static=peer.key, prologue=prologue(header))
        peer.send(header + noise.write_message(Offer().encode()))
        peer.closed_by_server()  # after the cookie reply
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    cookies = [entry for entry in logs if entry["event"] == "cookie_sent"]
    assert [(entry["log_level"], entry["stale"]) for entry in cookies] == [("debug", False)]


def test_an_unreachable_registry_is_logged_with_its_cause(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", registry=Unreachable())
    with captured_logs() as logs:
        serve_one(context, _register)
    unreachable = [entry for entry in logs if entry["event"] == "registry_unreachable"]
    assert [(e["log_level"], e["error"]) for e in unreachable] == [
        ("error", "the database is away")
    ]


def test_a_client_that_resets_the_connection_is_logged_as_lost(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register("nina")
        peer.send(peer.record(RequestCode.SEND_FILE, bytes(5000))[:100])
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset, not a close

    with captured_logs() as logs:
        serve_one(context, client)
    lost = [entry for entry in logs if entry["event"] == "connection_lost"]
    assert [(e["log_level"], e["error"]) for e in lost] == [
        ("info", "[Errno 104] Connection reset by peer")
    ]
