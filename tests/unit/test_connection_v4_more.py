"""More of the version-4 connection (server/eft_server/connection_v4.py), in this
process over loopback: what its first mutation run let through — a refusal for a limit
of this server logged with its detail."""

from __future__ import annotations

from pathlib import Path

from tests.v4.wire_client import WireV4

from .in_process_server import captured_logs, make_context, serve_one, value


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
