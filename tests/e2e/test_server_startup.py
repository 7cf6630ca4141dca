"""Why a server could not start: its own event, the real values, one message, an exit
code of its own (README: "Exit codes of eft-server")."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eft_lab.processes import clean_env


def start(tmp_path: Path, *args: str, pass_fds: tuple[int, ...] = ()) -> tuple[int, list[Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "eft_server", "--log-format", "json", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        pass_fds=pass_fds,
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, records


def failure(records: list[Any]) -> dict[str, Any]:
    (error,) = [r for r in records if r.get("level") == "error"]
    assert "listening" not in [r.get("event") for r in records]
    return dict(error)


def test_a_port_in_use_says_which_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, records = start(
            tmp_path, "--host", "127.0.0.1", "--port", str(port), "--data-dir", "data"
        )
    assert code == 3
    error = failure(records)
    assert error["event"] == "cannot_listen"
    assert (error["host"], error["port"]) == ("127.0.0.1", port)
    assert f"cannot listen on 127.0.0.1:{port}" in error["message"]


def test_a_metrics_port_in_use_is_not_mistaken_for_the_servers(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, records = start(
            tmp_path,
            "--host", "127.0.0.1", "--port", "0",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
            "--data-dir", "data",
        )  # fmt: skip
    assert code == 4
    error = failure(records)
    assert error["event"] == "cannot_serve_metrics"
    assert error["metrics_port"] == port
    assert "--metrics-port" in error["message"]


def test_a_data_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    code, records = start(tmp_path, "--host", "127.0.0.1", "--port", "0", "--data-dir", "data")
    assert code == 5
    error = failure(records)
    assert error["event"] == "data_dir_unusable"
    assert error["data_dir"] == "data"
    assert error["message"].startswith("cannot use data as the data directory")


def test_an_inherited_socket_that_does_not_listen(tmp_path: Path) -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        code, records = start(
            tmp_path,
            "--listen-fd", str(bound.fileno()), "--data-dir", "data",
            pass_fds=(bound.fileno(),),
        )  # fmt: skip
    assert code == 3
    error = failure(records)
    assert error["event"] == "cannot_listen"
    assert "not listening" in error["message"]


@pytest.mark.parametrize("flag", [["--port", "70000"], ["--max-connections", "0"]])
def test_a_bad_flag_is_a_usage_error(tmp_path: Path, flag: list[str]) -> None:
    code, _records = start(tmp_path, *flag)
    assert code == 2
