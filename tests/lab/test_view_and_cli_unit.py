"""The lab's view (lab/eft_lab/view.py) and its command's checks (lab/eft_lab/cli.py),
on their own: the live table's rows and the server's figures read from real /metrics
endpoints served in this process on 127.0.0.1 (summed over replicas), the summary's
lines, and every flag combination ``eft-lab`` refuses before starting anything."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from rich.console import Console

from eft_lab import cli, prometheus
from eft_lab.cpp_clients import CppClientLoop
from eft_lab.view import LiveView, print_summary


@dataclass
class _Client:
    name: str
    protocol: int
    metrics_port: int


@dataclass
class _Servers:
    metrics_ports: list[int]


@pytest.fixture
def endpoints() -> Iterator[list[tuple[int, CollectorRegistry]]]:
    """Three /metrics endpoints on 127.0.0.1: a client's and two server replicas'."""
    served = []
    for _ in range(3):
        registry = CollectorRegistry()
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        served.append((server, thread, registry))
    try:
        yield [(server.server_address[1], registry) for server, _, registry in served]
    finally:
        for server, thread, _ in served:
            server.shutdown()
            server.server_close()
            thread.join()


def _client_metrics(registry: CollectorRegistry) -> None:
    Counter("eft_client_attempts", "", registry=registry).inc(7)
    transfers = Counter("eft_client_transfers", "", ["outcome"], registry=registry)
    transfers.labels("verified").inc(5)
    transfers.labels("gave_up").inc(1)
    Counter("eft_client_retries", "", registry=registry).inc(2)
    Counter("eft_client_sent_bytes", "", registry=registry).inc(3_500_000)


def _server_metrics(registry: CollectorRegistry, verified: int, active: int) -> None:
    Gauge("eft_connections_active", "", registry=registry).set(active)
    transfers = Counter("eft_transfers", "", ["outcome", "version"], registry=registry)
    transfers.labels("verified", "3").inc(verified)
    transfers.labels("verified", "4").inc(1)
    Counter("eft_crc_mismatches", "", registry=registry).inc(2)
    Counter("eft_received_ciphertext_bytes", "", ["version"], registry=registry).labels("3").inc(
        1_000_000
    )


def test_rows_and_figures_come_from_the_endpoints(
    endpoints: list[tuple[int, CollectorRegistry]], tmp_path: Path
) -> None:
    (client_port, client_registry), (first, first_registry), (second, second_registry) = endpoints
    _client_metrics(client_registry)
    _server_metrics(first_registry, verified=4, active=2)
    _server_metrics(second_registry, verified=6, active=1)
    cpp = CppClientLoop(Path("/nonexistent"), tmp_path, "cpp-1", seed=0)
    cpp.runs, cpp.verified, cpp.gave_up, cpp.failed, cpp.bytes_verified = 4, 2, 1, 1, 2_000_000
    view = LiveView(
        Console(file=None, record=True),
        cast(Any, _Servers([first, second])),
        cast(Any, [_Client("py-1", 4, client_port)]),
        [cpp],
    )
    rows = view.client_rows()
    assert rows[0] == {
        "client": "py-1",
        "kind": "py v4",
        "attempts": 7,
        "verified": 5,
        "gave_up": 1,
        "failed": 0,
        "retries": 2,
        "corrupted": 0,
        "mb_sent": 3.5,
    }
    assert rows[1]["kind"] == "c++" and rows[1]["verified"] == 2 and rows[1]["mb_sent"] == 2.0
    figures = view.server_figures()
    assert figures["connections_active"] == 3
    assert figures["verified"] == 4 + 6 + 2, "both versions, both replicas"
    assert figures["crc_mismatches"] == 4 and figures["mb_received"] == 2.0
    table = view.table("lab")
    assert table.row_count == 2
    assert "3 connections open, 12 verified, 4 CRC mismatches" in str(table.caption)


def test_an_endpoint_without_figures_or_not_answering_counts_zero(
    endpoints: list[tuple[int, CollectorRegistry]],
) -> None:
    port, _ = endpoints[0]  # answers, with no eft metrics in it
    with socket.socket() as bound:  # bound, not listening: refused
        bound.bind(("127.0.0.1", 0))
        silent = bound.getsockname()[1]
        view = LiveView(Console(record=True), cast(Any, _Servers([port, silent])), [], [])
        figures = view.server_figures()
    assert figures["verified"] == 0 and figures["connections"] == 0
    assert view.client_rows() == []


def _summary(problems: list[str]) -> dict[str, Any]:
    row = dict.fromkeys(("attempts", "verified", "gave_up", "failed", "retries"), 1)
    return {
        "clients": [{"client": "py-1", "kind": "py v3", "mb_sent": 0.5, **row}],
        "server": {"verified": 9, "crc_mismatches": 3, "protocol_errors": 0},
        "verified_on_disk": {"checked": 9, "bytes": 12345},
        "seconds": 20,
        "throughput_mb_s": 0.1,
        "metrics_url": "http://127.0.0.1:1/metrics",
        "logs": {"server": "/x/server.log"},
        "problems": problems,
    }


def test_the_summary_says_what_was_checked_and_each_problem() -> None:
    console = Console(record=True, width=200)
    print_summary(console, _summary([]))
    text = console.export_text()
    assert "server verified 9 files, 3 CRC mismatches" in text
    assert "9 client-verified files checked byte for byte in the store (12,345 bytes" in text
    assert "every verified file is on the server, byte for byte" in text
    assert "server:" in text and "/x/server.log" in text
    console = Console(record=True, width=200)
    print_summary(console, _summary(["py-1: a.bin differs on the server"]))
    text = console.export_text()
    assert "problem: py-1: a.bin differs on the server" in text
    assert "every verified file" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clients", "-1"], "client counts cannot be negative"),
        (["--clients", "0", "--v4-clients", "0"], "the lab needs at least one client"),
        (["--servers", "0"], "--servers must be at least 1"),
        (["--corrupt-rate", "1.5"], "--corrupt-rate must be between 0 and 1"),
        (["--attack", "no-such-attack"], "--attack:"),
        (["--attack", "replay", "--servers", "2"], "--attack runs against one server"),
        (["--prometheus", "on"], "no prometheus binary"),
        (["--cpp-clients", "1"], "needs the C++ client"),
        (["--dashboard", "/nonexistent/board.json"], "no such file"),
    ],
)
def test_flags_the_lab_refuses_before_starting_anything(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(prometheus, "find_binary", lambda: None)
    monkeypatch.setattr(cli, "find_cpp_client", lambda: None)
    started: list[object] = []
    monkeypatch.setattr(cli, "Lab", lambda *args: started.append(args))
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert started == []
