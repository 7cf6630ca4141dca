"""``eft-admin``'s command (server/eft_admin/cli.py) in this process: where an action
runs (offline under the data directory's lock, or refused), what each refusal's exit
code is, and what ``main`` prints; the actions themselves are tested through a running
server in the other files here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from eft_admin import cli

from eft_protocol.registry import ClientRecord
from eft_server.control import AdminError
from eft_server.data_lock import DataDirLock
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

ALICE = ClientRecord(bytes.fromhex("11" * 16), "alice", 1_700_000_000.0, public_key=b"k")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A server's data directory, offline, whose registry knows alice."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    registry = SqliteRegistry(data / DATABASE_FILE)
    registry.save_client(ALICE)
    pending = registry.flush()
    assert pending is not None
    pending.result()
    registry.close()
    return data


@pytest.fixture
def logs_kept() -> Iterator[None]:
    saved = structlog.get_config()  # main configures logging for the whole process
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_offline_the_action_runs_under_the_lock_and_changes_the_registry(data_dir: Path) -> None:
    listed, where = cli.run(data_dir, "list-clients", {}, timeout=5)
    assert where == "offline"
    assert [row["name"] for row in listed["clients"]] == ["alice"]
    cli.run(data_dir, "revoke", {"client": "alice"}, timeout=5)
    listed, _ = cli.run(data_dir, "list-clients", {}, timeout=5)
    assert listed["clients"][0]["revoked"] is True, "kept in the data directory"
    DataDirLock(data_dir).release()  # the lock was given back after each action


@pytest.mark.parametrize(
    ("setup", "kind"),
    [("missing", "no_data_dir"), ("no-registry", "no_data_dir"), ("shared", "shared_registry")],
)
def test_where_an_action_cannot_run(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, setup: str, kind: str
) -> None:
    target = data_dir
    if setup == "missing":
        target = tmp_path / "nowhere"
    elif setup == "no-registry":
        target = tmp_path / "empty"
        target.mkdir()
    else:
        monkeypatch.setenv("EFT_REGISTRY", "postgresql://db/eft")
    with pytest.raises(AdminError) as refused:
        cli.run(target, "list-clients", {}, timeout=5)
    assert refused.value.kind == kind
    assert cli.EXIT_CODES[kind] == 3


def test_a_locked_directory_without_a_control_socket_is_unreachable(data_dir: Path) -> None:
    held = DataDirLock(data_dir)  # as a server holds it; but it answers nothing
    try:
        with pytest.raises(AdminError) as refused:
            cli.run(data_dir, "list-clients", {}, timeout=5)
    finally:
        held.release()
    assert refused.value.kind == "server_unreachable"
    assert cli.EXIT_CODES["server_unreachable"] == 8


def test_main_prints_the_answer_and_returns_0(
    data_dir: Path, capsys: pytest.CaptureFixture[str], logs_kept: None
) -> None:
    assert cli.main(["--data-dir", str(data_dir), "list-clients", "--json"]) == 0
    captured = capsys.readouterr()
    assert [row["name"] for row in json.loads(captured.out)] == ["alice"]
    logged = [json.loads(line) for line in captured.err.splitlines()]
    assert [(e["event"], e["ok"], e["where"]) for e in logged] == [
        ("admin_action", True, "offline")
    ]


def test_main_turns_a_refusal_into_its_exit_code(
    data_dir: Path, capsys: pytest.CaptureFixture[str], logs_kept: None
) -> None:
    assert cli.main(["--data-dir", str(data_dir), "revoke", "nobody"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "eft-admin: " in captured.err
    logged = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert [(e["error"], e["exit_code"]) for e in logged] == [("unknown_client", 4)]
