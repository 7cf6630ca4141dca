"""Why the server could not start (server/eft_server/startup.py), and how its command
(server/eft_server/cli.py) turns each reason into its log event and exit code: the
failures are provoked in this process — a data directory that is a file, a registry URL
holding a password, a port another socket holds, a server key others can read, a store
that is not S3 — and ``main`` is run once whole."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from eft_server import cli, server_key, startup
from eft_server.config import ServerConfig

CODES = {
    startup.CannotListen: (3, "cannot_listen"),
    startup.MetricsUnavailable: (4, "cannot_serve_metrics"),
    startup.DataDirUnusable: (5, "data_dir_unusable"),
    startup.ServerKeyExposed: (7, "server_key_exposed"),
    startup.RegistryUnavailable: (8, "registry_unavailable"),
    startup.StoreUnusable: (9, "store_unusable"),
}


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port a listening socket of this test holds until the test ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _start(config: ServerConfig) -> startup.StartupError:
    with pytest.raises(startup.StartupError) as failed:
        asyncio.run(cli._serve(config))
    return failed.value


@pytest.mark.parametrize("kind", list(CODES), ids=lambda kind: kind.__name__)
def test_each_reason_has_its_exit_code_and_event(kind: type[startup.StartupError]) -> None:
    assert (kind.exit_code, kind.event) == CODES[kind]
    assert issubclass(kind, startup.StartupError)


def test_the_codes_are_distinct_and_leave_room_for_argparse_bugs_and_the_lock() -> None:
    codes = [code for code, _ in CODES.values()]
    assert len(set(codes)) == len(codes)
    assert not {1, 2, cli.EXIT_DATA_DIR_LOCKED} & set(codes)
    assert startup.StartupError.exit_code == 1


def test_the_messages_say_what_and_the_fields_carry_it() -> None:
    busy = OSError(errno.EADDRINUSE, "Address already in use")
    listen = startup.CannotListen.on("127.0.0.1", 5000, busy)
    assert "cannot listen on 127.0.0.1:5000: Address already in use" in str(listen)
    assert "--port" in str(listen)
    assert listen.fields == {"host": "127.0.0.1", "port": 5000, "error": str(busy)}
    metrics = startup.MetricsUnavailable.on("0.0.0.0", 9100, busy)
    assert "--metrics-port" in str(metrics) and metrics.fields["metrics_port"] == 9100
    exposed = startup.ServerKeyExposed.too_open(Path("/d/server.key"), 0o644)
    assert "0644" in str(exposed) and "chmod 600 /d/server.key" in str(exposed)
    assert exposed.fields == {"path": "/d/server.key", "mode": "0644"}
    owned = startup.ServerKeyExposed.not_owned(Path("/d/server.key"), 0, 1000)
    assert "uid 0" in str(owned) and "chown 1000" in str(owned)
    unusable = startup.DataDirUnusable.at(Path("/d"), PermissionError(13, "Permission denied"))
    assert str(unusable) == "cannot use /d as the data directory: Permission denied"


def test_a_data_directory_that_is_a_file_is_exit_5(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    error = _start(ServerConfig(data_dir=data_dir, ephemeral=True))
    assert isinstance(error, startup.DataDirUnusable) and error.exit_code == 5
    assert error.fields["data_dir"] == str(data_dir)
    assert data_dir.read_text() == "not a directory", "left as it was"


def test_a_registry_url_with_a_password_is_exit_8_and_not_repeated(tmp_path: Path) -> None:
    url = "postgresql://eft:s3cret@db.example:5432/eft?sslmode=disable"
    error = _start(ServerConfig(data_dir=tmp_path / "data", registry=url))
    assert isinstance(error, startup.RegistryUnavailable) and error.exit_code == 8
    assert error.fields["registry"] == "db.example:5432/eft"
    assert "s3cret" not in str(error.fields["registry"])
    assert "must not hold a user or a password" in str(error)


def test_a_port_another_socket_holds_is_exit_3(tmp_path: Path, held_port: int) -> None:
    config = ServerConfig(
        data_dir=tmp_path / "data", ephemeral=True, host="127.0.0.1", port=held_port
    )
    error = _start(config)
    assert isinstance(error, startup.CannotListen) and error.exit_code == 3
    assert (error.fields["host"], error.fields["port"]) == ("127.0.0.1", held_port)


def test_a_metrics_port_another_socket_holds_is_exit_4(tmp_path: Path, held_port: int) -> None:
    config = ServerConfig(
        data_dir=tmp_path / "data",
        ephemeral=True,
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        metrics_port=held_port,
    )
    error = _start(config)
    assert isinstance(error, startup.MetricsUnavailable) and error.exit_code == 4
    assert error.fields["metrics_port"] == held_port


def test_main_logs_the_event_and_returns_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("")
    saved = structlog.get_config()  # main configures logging for the whole process
    try:
        code = cli.main(["--data-dir", str(data_dir), "--ephemeral", "--log-format", "json"])
    finally:
        structlog.configure(**saved)
    assert code == 5
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    failed = [line for line in lines if line.get("event") == "data_dir_unusable"]
    assert len(failed) == 1
    assert failed[0]["exit_code"] == 5 and failed[0]["level"] == "error"
    assert failed[0]["data_dir"] == str(data_dir)


def test_a_server_key_others_can_read_is_exit_7(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    server_key.load_or_create(data_dir)
    key = data_dir / server_key.KEY_FILE
    key.chmod(0o644)
    error = _start(ServerConfig(data_dir=data_dir, ephemeral=True))
    assert isinstance(error, startup.ServerKeyExposed) and error.exit_code == 7
    assert error.fields == {"path": str(key), "mode": "0644"}


def test_a_store_that_is_not_s3_is_exit_9(tmp_path: Path) -> None:
    error = _start(ServerConfig(data_dir=tmp_path / "data", ephemeral=True, store="ftp://x/y"))
    assert isinstance(error, startup.StoreUnusable) and error.exit_code == 9
    assert error.fields == {"store": "ftp://x/y"}
