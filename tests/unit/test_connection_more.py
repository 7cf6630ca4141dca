"""More of the version-3 connection (server/eft_server/connection.py), in this process
over loopback: what its first mutation run let through — at debug level each packet is
logged with its number and count, and not at info level; a storage failure logged with
its reason and detail; a rejected request with its detail; each request counted and
logged by its code, a refused one under its own code too; the configured file-size and
packet-payload limits are the ones applied, and ``--answer-901``."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from eft_protocol import crypto
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import CrcGiveUpRequest, CrcRetryRequest
from eft_server.storage import StorageError
from tests.support.raw_client import PeerClosed, RawClient

from .in_process_server import captured_logs, make_context, serve_one, value

KEY = crypto.generate_rsa_key(random.Random(6).randbytes)  # one key: generating costs
DATA = bytes(random.Random(2).randbytes(10_000))


def _packets(tmp_path: Path, level: str) -> list[tuple[int, int]]:
    context = make_context(tmp_path / level, log_level=level)

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        session = raw.handshake("kate")
        sender = session.begin_file("p.bin", len(DATA), 4096)
        raw.send(*sender.feed(DATA), *sender.finish())
        raw.receive()
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    return [(entry["number"], entry["total"]) for entry in logs if entry["event"] == "packet"]


def test_each_packet_is_logged_at_debug_level_only(tmp_path: Path) -> None:
    assert _packets(tmp_path, "debug") == [(1, 3), (2, 3), (3, 3)]
    assert _packets(tmp_path, "info") == []


def test_a_store_that_fails_is_logged_with_its_reason_and_detail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(tmp_path / "data")

    async def refuse(*_: Any) -> Any:
        raise StorageError("the disk is full")

    monkeypatch.setattr(context.store, "open_upload", refuse)

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        session = raw.handshake("liam")
        sender = session.begin_file("a.txt", 100, 4096)
        raw.send(*sender.feed(bytes(100)), *sender.finish())
        raw.receive()
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    failed = [entry for entry in logs if entry["event"] == "storage_failed"]
    assert [(e["log_level"], e["reason"], e["detail"]) for e in failed] == [
        ("error", "StorageError", "the disk is full")
    ]


def test_a_rejected_request_is_logged_with_its_detail(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    header = bytes(16) + struct.pack("<BHI", 3, 999, 0)  # an unknown code

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.send(header)
        raw.receive()
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    rejected = [entry for entry in logs if entry["event"] == "request_rejected"]
    assert [(e["reason"], e["detail"]) for e in rejected] == [
        ("unknown_code", "unknown request code 999")
    ]


def test_each_request_is_counted_and_logged_by_its_code_a_refused_one_too(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    bad_name = bytes(16) + struct.pack("<BHI", 3, 825, 255) + b"\x01" + bytes(254)

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.handshake("mia")  # 825, 826
        raw.close()

    def refused(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        raw.send(bad_name)  # a well-framed 825 whose name is refused
        raw.receive()
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
        serve_one(context, refused)
    assert [entry["code"] for entry in logs if entry["event"] == "request"] == [825, 826]
    assert value(context, "eft_requests_total", code="825", version="3") == 2
    assert value(context, "eft_requests_total", code="unknown", version="3") == 0


def _refusals(tmp_path: Path, size: int, packet: int, **config: Any) -> list[str]:
    """The reasons a connection configured so refused one file of ``size`` bytes sent
    in packets of ``packet`` bytes."""
    context = make_context(tmp_path / "data", **config)

    def client(address: str) -> None:
        raw = RawClient(address, new_key=lambda: KEY)
        session = raw.handshake("olga")
        sender = session.begin_file("big.bin", size, packet)
        raw.send(*sender.feed(bytes(size)), *sender.finish())
        raw.receive()
        raw.close()

    with captured_logs() as logs:
        serve_one(context, client)
    return [entry["reason"] for entry in logs if entry["event"] == "request_rejected"]


def test_the_configured_file_size_limit_is_the_one_applied(tmp_path: Path) -> None:
    assert _refusals(tmp_path, 5000, 4096, max_file_size=4000) == ["file_too_large"]


def test_the_configured_packet_payload_limit_is_the_one_applied(tmp_path: Path) -> None:
    assert _refusals(tmp_path, 5000, 4096, max_packet_payload=1024) == ["payload_too_large"]


def test_answer_901_is_the_connection_s_to_choose(tmp_path: Path) -> None:
    """``--answer-901``: a CRC retry request is answered (1604) only when configured."""

    def answers(context: Any) -> list[int]:
        def client(address: str) -> list[int]:
            raw = RawClient(address, new_key=lambda: KEY)
            session = raw.handshake("pia")
            sender = session.begin_file("c.bin", 100, 4096)
            raw.send(*sender.feed(bytes(100)), *sender.finish())
            raw.receive()  # 1603
            raw.send(CrcRetryRequest(raw.client_id, "c.bin").encode())
            raw.send(CrcGiveUpRequest(raw.client_id, "c.bin").encode())  # 1604
            raw.sock.shutdown(socket.SHUT_WR)  # then every answer, up to the close
            codes = []
            with contextlib.suppress(PeerClosed):
                while True:
                    codes.append(int(raw.receive().code))
            raw.close()
            return codes

        codes, _ = serve_one(context, client)
        return codes

    acknowledged = int(ResponseCode.ACKNOWLEDGED)
    on = answers(make_context(tmp_path / "on", answer_crc_retry=True))
    assert on == [acknowledged, acknowledged]
    assert answers(make_context(tmp_path / "off")) == [acknowledged], "the 902's only"
