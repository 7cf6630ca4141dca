"""More of the version-3 connection (server/eft_server/connection.py), in this process
over loopback: what its first mutation run let through — at debug level each packet is
logged with its number and count, and not at info level."""

from __future__ import annotations

import random
from pathlib import Path

from eft_protocol import crypto
from tests.support.raw_client import RawClient

from .in_process_server import captured_logs, make_context, serve_one

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
