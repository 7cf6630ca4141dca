"""The command line (table, JSON, exit codes) and docs/CONFORMANCE.md against the catalogue."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest

from eft_check.cli import main
from eft_check.rules import CLIENT_CHECKS, MISTAKES, SERVER_CHECKS
from tests.check.deviant_server import DeviantServer, Quirks

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFORMANCE.md"
DEVIANT_CLIENT = [sys.executable, str(Path(__file__).with_name("deviant_client.py"))]


def test_json_names_the_mistake_with_its_frames_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with DeviantServer(Quirks(empty_1606=True)) as server:
        code = main(["--json", "server", server.address])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["conforms"] is False
    assert report["mistakes"] == ["empty-1606"]
    (deviant,) = [r for r in report["results"] if r["status"] != "pass"]
    assert deviant["check"] == "reconnect-unknown"
    assert deviant["status"] == "deviation"
    assert deviant["mistakes"][0]["section"] == "§7"
    # the evidence: our 827, then the server's 1606 with payload_size 0
    assert [f["hex"] for f in deviant["frames"]][-1] == "03 4606 00000000"


def test_a_conforming_server_exits_0_and_the_table_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with DeviantServer() as server:
        code = main(["--only", "register", "--only", "crc-902", "server", server.address])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 pass, 0 deviation, 0 fail: conforms" in out


def test_the_table_shows_what_went_wrong_and_the_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    with DeviantServer(Quirks(answer_901=True)) as server:
        code = main(["--only", "crc-901", "server", server.address])
    out = capsys.readouterr().out
    assert code == 1
    assert "mistake answers-901 (§3.4, §7)" in out
    assert "<- 03 4406 10000000" in out  # the 1604 that should not have come


def test_client_mode_runs_the_command_and_exits_0_when_it_conforms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--json", "--only", "name-taken", "client", "--", *DEVIANT_CLIENT])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert [r["check"] for r in report["results"]] == ["name-taken"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "no-port-here"]) == 2
    assert main(["client", "--"]) == 2
    assert main(["--only", "no-such-check", "server", "127.0.0.1:1"]) == 2


def test_a_server_that_is_not_there_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    # A port we hold without listening: connections are refused, and no other process
    # can take it meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        code = main(["--only", "register", "server", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "cannot connect" in err


def test_the_conformance_doc_lists_every_check_and_mistake_with_its_section() -> None:
    text = DOC.read_text()
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `([a-z0-9-]+)`[^|]*\| ([^|]+) \|", text, re.MULTILINE)
    }
    for rule in [*SERVER_CHECKS.values(), *CLIENT_CHECKS.values(), *MISTAKES.values()]:
        assert rule.id in rows, rule.id
    for mistake in MISTAKES.values():
        assert rows[mistake.id] == mistake.section, mistake.id
