"""The lab's load generator (lab/eft_lab/load_generator.py) on its own: files made
reproducibly from the seed and never rewritten, the figures it reports, its reporter;
then a small run in this process against a server in the same event loop on 127.0.0.1,
whose report must match what the server stored, and a run against a port where nothing
listens, whose failures must be reported with their exit code."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from eft_lab.load_generator import (
    RecordingReporter,
    build_parser,
    main_async,
    percentiles,
    prepare,
)
from eft_server.app import Server
from eft_server.config import ServerConfig


def _args(workdir: Path, server: str, *extra: str) -> Any:
    return build_parser().parse_args(["--server", server, "--workdir", str(workdir), *extra])


def test_files_are_reproducible_from_the_seed_and_kept(tmp_path: Path) -> None:
    args = _args(tmp_path / "a", "127.0.0.1:1", "--clients", "3", "--files-per-client", "2")
    args.min_size, args.max_size, args.seed = 10, 500, 7
    first = prepare(args)
    assert [settings.name for settings, _ in first] == ["load-0000", "load-0001", "load-0002"]
    assert all(len(files) == 2 for _, files in first)
    sizes = [path.stat().st_size for _, files in first for path in files]
    assert all(10 <= size <= 500 for size in sizes)
    again = _args(tmp_path / "b", "127.0.0.1:1", "--clients", "3", "--files-per-client", "2")
    again.min_size, again.max_size, again.seed = 10, 500, 7
    contents = [path.read_bytes() for _, files in first for path in files]
    assert [path.read_bytes() for _, files in prepare(again) for path in files] == contents
    kept = first[0][1][0]
    kept.write_bytes(b"mine")
    prepare(args)
    assert kept.read_bytes() == b"mine", "an existing file is not rewritten"
    settings = first[0][0]
    assert (settings.host, settings.port, settings.retries) == ("127.0.0.1", 1, 3)
    assert settings.config_dir == tmp_path / "a" / "load-0000"


def test_percentiles() -> None:
    assert percentiles([]) == {}
    figures = percentiles([float(n) for n in range(1, 101)])
    assert figures == {"min": 1, "p50": 51, "p90": 91, "p99": 100, "max": 100, "mean": 50.5}
    assert percentiles([2.0]) == {"min": 2, "p50": 2, "p90": 2, "p99": 2, "max": 2, "mean": 2}


def test_the_reporter_keeps_what_the_report_needs() -> None:
    reporter = RecordingReporter()
    reporter.event("file_verified", file="a.bin", size=3)
    reporter.event("connection_retry", attempt=1)
    reporter.event("server_error", code=1607)
    reporter.event("server_error", code=1607)
    reporter.event("file_started", file="b.bin")
    assert reporter.verified == ["a.bin"]
    assert (reporter.connection_retries, reporter.server_errors) == (1, 2)


async def _against_a_server(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    server = Server(ServerConfig(data_dir=tmp_path / "server", host="127.0.0.1", port=0))
    await server.start()
    try:
        args = _args(
            tmp_path / "load",
            f"127.0.0.1:{server.port}",
            "--clients",
            "3",
            "--max-size",
            "3000",
            "--register-first",
        )
        report = await main_async(args)
    finally:
        await server.shutdown()
    return report, tmp_path / "server" / "files"


def test_a_run_reports_what_the_server_stored(tmp_path: Path) -> None:
    report, files = asyncio.run(_against_a_server(tmp_path))
    assert (report["clients"], report["successes"], report["failures"]) == (3, 3, 0)
    assert report["files_verified"] == 3
    assert set(report["latency_seconds"]) == {"min", "p50", "p90", "p99", "max", "mean"}
    for client in report["per_client"]:
        assert client["verified"] == client["files"] and client["exit_code"] == 0
        source = tmp_path / "load" / client["name"] / "files" / client["files"][0]
        stored = files / client["client_id"] / client["files"][0]
        assert stored.read_bytes() == source.read_bytes()


def test_clients_that_cannot_connect_are_reported_with_their_exit_code(tmp_path: Path) -> None:
    with socket.socket() as bound:  # bound, not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        args = _args(tmp_path, address, "--clients", "2", "--retries", "0")
        report = asyncio.run(main_async(args))
    assert (report["successes"], report["failures"]) == (0, 2)
    assert report["latency_seconds"] == {}
    for client in report["per_client"]:
        assert client["error"] and client["exit_code"] not in (0, 1)
        assert client["verified"] == [] and client["client_id"] is None
