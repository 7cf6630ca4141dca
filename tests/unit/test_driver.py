"""The one connection loop (server/eft_server/driver.py), run in this process over a
loopback socket through the version-3 connection: a read deadline closes the connection
and is counted by kind; a registry write that fails is reverted and never reported as
done; a registration lost to another replica is answered as a taken name; a registry
that cannot be read cuts the connection with an error logged."""

from __future__ import annotations

import concurrent.futures
import random
import sqlite3
import struct
from pathlib import Path

from eft_protocol import crypto
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import ResponseCode
from eft_protocol.registry import ClientRecord
from eft_protocol.wire import ServerError
from eft_server.registry import EphemeralRegistry
from eft_server.registry_errors import NameTaken, RegistryUnreachable
from tests.support.raw_client import RawClient

from .in_process_server import captured_logs, events, make_context, serve_one, value

KEY = crypto.generate_rsa_key(random.Random(4).randbytes)


class FailingFlush(EphemeralRegistry):
    """Every flush after a change fails with ``error``; reverts are recorded."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.changed = False
        self.reverted: list[concurrent.futures.Future[None]] = []
        self.flushed: list[concurrent.futures.Future[None]] = []

    def save_client(self, record: ClientRecord) -> None:
        super().save_client(record)
        self.changed = True

    def flush(self) -> concurrent.futures.Future[None] | None:
        if not self.changed:
            return None
        self.changed = False
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_exception(self.error)
        self.flushed.append(future)
        return future

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        self.reverted.append(flushed)


class Unreachable(EphemeralRegistry):
    def client_by_name(self, name: str) -> ClientRecord | None:
        raise RegistryUnreachable("the database is away")


def _register(address: str) -> tuple[int, bool]:
    """825 for "frank": the answer's code, or (-1, True) if the server closed instead."""
    raw = RawClient(address)
    session = ClientSession("frank", new_key=lambda: KEY)
    raw.send(*session.start())
    try:
        code = int(raw.receive().code)
    except ConnectionError:
        return -1, True
    raw.close()
    return code, False


def test_a_handshake_that_does_not_come_in_time_is_closed_and_counted(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", handshake_timeout=0.05)
    header = bytes(16) + struct.pack("<BHI", 3, 825, 255)  # its payload never comes

    def client(address: str) -> bool:
        raw = RawClient(address)
        raw.send(header)
        closed = raw.closed_by_server()
        raw.close()
        return closed

    with captured_logs() as logs:
        closed, _ = serve_one(context, client)
    assert closed
    timeouts = [entry for entry in logs if entry["event"] == "connection_timeout"]
    assert [entry["kind"] for entry in timeouts] == ["handshake"]
    assert value(context, "eft_connection_timeouts_total", kind="handshake") == 1
    assert value(context, "eft_connection_timeouts_total", kind="idle") == 0
    assert value(context, "eft_connections_active") == 0


def test_a_registry_write_that_fails_is_reverted_and_not_reported(tmp_path: Path) -> None:
    registry = FailingFlush(sqlite3.OperationalError("disk I/O error"))
    context = make_context(tmp_path / "data", registry=registry)
    with captured_logs() as logs:
        (code, _), _ = serve_one(context, _register)
    assert code != int(ResponseCode.REGISTERED), "a registration the disk lost is not told"
    assert code == int(ServerError.code)
    assert registry.reverted == registry.flushed and len(registry.flushed) == 1
    assert value(context, "eft_responses_total", code="1600", version="3") == 0
    assert any(entry["log_level"] == "error" for entry in logs), "an operator must see it"


def test_a_registration_lost_to_another_replica_is_answered_as_a_taken_name(
    tmp_path: Path,
) -> None:
    registry = FailingFlush(NameTaken("frank"))
    context = make_context(tmp_path / "data", registry=registry)
    with captured_logs() as logs:
        (code, closed), _ = serve_one(context, _register)
    assert (code, closed) == (int(ResponseCode.REGISTRATION_FAILED), False)
    refused = [entry for entry in logs if entry["event"] == "registration_refused"]
    assert [entry["reason"] for entry in refused] == ["taken_meanwhile"]
    assert registry.reverted == registry.flushed and len(registry.flushed) == 1


def test_a_registry_that_cannot_be_read_cuts_the_connection(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data", registry=Unreachable())
    with captured_logs() as logs:
        (code, closed), _ = serve_one(context, _register)
    assert closed and code == -1, "cut, with no answer"
    unreachable = [entry for entry in logs if entry["event"] == "registry_unreachable"]
    assert len(unreachable) == 1 and unreachable[0]["log_level"] == "error"
    assert events(logs)[-1] == "connection_closed"
    assert value(context, "eft_connections_active") == 0
