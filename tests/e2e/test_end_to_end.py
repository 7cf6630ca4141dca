"""The whole version-3 system with real processes on 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from eft_protocol import crypto
from eft_protocol.wire import RegisterRequest, ServerError
from tests.hostile.helpers import wait_until
from tests.support.processes import (
    ClientDir,
    ProxyProcess,
    ServerProcess,
    finish,
    paused,
    write_random_file,
)
from tests.support.raw_client import RawClient

MiB = 1 << 20


def _verified(run_events: list[dict]) -> list[str]:
    return [e["file"] for e in run_events if e["event"] == "file_verified"]


def test_register_reconnect_and_register_again_after_a_restart(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--ephemeral")  # the original design: nothing persists
    client = client_factory("alice", server.address)
    source = write_random_file(tmp_path / "report.pdf", 100_000, seed=1)

    first = client.run([source])
    assert first.returncode == 0, first.stderr
    assert "registered" in first.kinds()
    me_info = (client.path / "me.info").read_text().splitlines()
    assert me_info[0] == "alice"
    assert len(me_info[1]) == 32 and int(me_info[1], 16) >= 0
    key = crypto.import_private_key("".join(me_info[2:]))
    assert len(crypto.public_key_der(key)) == 160
    assert (client.path / "priv.key").exists()
    first_id = client.client_id_hex
    assert server.stored(first_id, "report.pdf").read_bytes() == source.read_bytes()

    second = client.run([source])
    assert second.returncode == 0, second.stderr
    assert "reconnected" in second.kinds()
    assert "registered" not in second.kinds()
    assert any(r.get("event") == "reconnected" for r in server.logs())

    server.restart()  # the registry is in memory: the server forgets alice
    denied = client.run([source])  # a 1606 is not authenticated: me.info is kept
    assert denied.returncode == ExitCode.IDENTITY, denied.stderr
    assert client.client_id_hex == first_id
    third = client.run([source], "--re-register")  # the user's word
    assert third.returncode == 0, third.stderr
    assert third.kinds().index("reconnect_denied") < third.kinds().index("registered")
    assert client.client_id_hex != first_id
    assert server.stored(client.client_id_hex, "report.pdf").read_bytes() == source.read_bytes()


def test_a_restarted_server_remembers_its_clients_and_files(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = client_factory("amy", server.address)
    source = write_random_file(tmp_path / "kept.bin", 20_000, seed=2)
    assert client.run([source]).returncode == 0
    first_id = client.client_id_hex
    server.restart()
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert "reconnected" in run.kinds()
    assert "reconnect_denied" not in run.kinds()
    assert client.client_id_hex == first_id
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    assert listening["registry"] == "sqlite"
    assert listening["clients"] == 1


@pytest.mark.parametrize(
    ("size", "packet_size", "packets"),
    [(0, 65536, 1), (1000, 65536, 1), (64 * 1024, 64, 1025)],
    ids=["empty", "one-packet", "1025-packets"],
)
def test_files_of_every_shape_arrive_byte_identical(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
    size: int,
    packet_size: int,
    packets: int,
) -> None:
    client = client_factory("bob", server.address)
    source = write_random_file(tmp_path / "data.bin", size, seed=size)
    run = client.run([source], "--packet-size", str(packet_size))
    assert run.returncode == 0, run.stderr
    started = next(e for e in run.events if e["event"] == "file_started")
    assert started["packets"] == packets
    assert server.stored(client.client_id_hex, "data.bin").read_bytes() == source.read_bytes()


def test_several_files_in_one_session(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = client_factory("carol", server.address)
    files = [write_random_file(tmp_path / f"f{i}.bin", 5000 * i, seed=i) for i in range(3)]
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    assert _verified(run.events) == ["f0.bin", "f1.bin", "f2.bin"]
    assert sum(1 for r in server.logs() if r.get("event") == "connection_opened") == 1
    for path in files:
        assert server.stored(client.client_id_hex, path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_config_directory_that_does_not_exist_yet_is_made(
    server: ServerProcess, tmp_path: Path, protocol: int
) -> None:
    source = write_random_file(tmp_path / "first.bin", 3000, seed=protocol)
    config_dir = tmp_path / f"new{protocol}" / "deeper"
    client = ClientDir(config_dir, f"newcomer{protocol}", server.address, protocol=protocol)
    config_dir.rmdir()
    (tmp_path / f"new{protocol}").rmdir()
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert _verified(run.events) == ["first.bin"]
    assert (config_dir / ("me.info" if protocol == 3 else "me4.info")).is_file()


def test_a_config_directory_that_is_a_file_is_a_clear_usage_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    source = write_random_file(tmp_path / "f.bin", 10, seed=1)
    client = ClientDir(tmp_path / "c", "blocked", server.address)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    command = client.command([source])
    command[command.index("--config-dir") + 1] = str(blocker)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "not-a-dir" in done.stderr and "Traceback" not in done.stderr


def test_transfer_info_supplies_server_name_and_file(server: ServerProcess, tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    source = write_random_file(workdir / "from-info.txt", 3000)
    (workdir / "transfer.info").write_text(f"{server.address}\ndora\nfrom-info.txt\n")
    done = subprocess.run(
        [
            *ClientDir(workdir, "x", "y").command([])[:3],
            "--config-dir",
            str(workdir),
            "--quiet",
            "--protocol",
            "3",
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client_id = (workdir / "me.info").read_text().splitlines()[1]
    assert server.stored(client_id, "from-info.txt").read_bytes() == source.read_bytes()


@pytest.mark.slow
def test_a_200_mib_file_with_server_memory_under_100_mib(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    source = write_random_file(tmp_path / "big.bin", 200 * MiB, seed=7)
    client = client_factory("erin", server.address)
    run = client.run([source], "--packet-size", str(MiB))
    peak = server.peak_rss()  # the kernel's high-water mark: no sampling to miss a peak
    assert run.returncode == 0, run.stderr
    stored = server.stored(client.client_id_hex, "big.bin")
    assert stored.stat().st_size == source.stat().st_size
    assert _same_content(stored, source)
    assert peak < 100 * MiB, f"server RSS peaked at {peak / MiB:.1f} MiB"


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


@pytest.mark.slow
def test_fifty_clients_at_once(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    jobs = []
    for i in range(50):
        client = client_factory(f"client{i:02d}", server.address)
        source = write_random_file(tmp_path / f"c{i}.bin", 1000 + i * 4099, seed=100 + i)
        jobs.append((client, source, client.start([source])))
    for client, source, proc in jobs:
        run = finish(proc)
        assert run.returncode == 0, run.stderr
        assert server.stored(client.client_id_hex, source.name).read_bytes() == source.read_bytes()
    assert len(list((server.data_dir / "files").iterdir())) == 50


@pytest.mark.parametrize("answer_901", [False, True], ids=["spec-901", "901-answered"])
def test_corrupted_once_is_resent_and_verified(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[[str, str], ProxyProcess],
    tmp_path: Path,
    answer_901: bool,
) -> None:
    server = server_factory(*(["--answer-901"] if answer_901 else []))
    proxy = proxy_factory(server.address, "once")
    client = client_factory("frank", proxy.address)
    source = write_random_file(tmp_path / "fragile.bin", 50_000, seed=3)
    run = client.run([source], "--packet-size", "8192")
    assert run.returncode == 0, run.stderr
    mismatches = [e for e in run.events if e["event"] == "crc_mismatch"]
    assert [m["attempt"] for m in mismatches] == [1]
    assert _verified(run.events) == ["fragile.bin"]
    assert server.stored(client.client_id_hex, "fragile.bin").read_bytes() == source.read_bytes()
    outcomes = [r["outcome"] for r in server.logs() if r.get("event") == "transfer"]
    assert outcomes == ["received", "retried", "received", "verified"]


@pytest.mark.parametrize("answer_901", [False, True], ids=["spec-901", "901-answered"])
def test_corrupted_every_time_gives_up_with_the_integrity_exit_code(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[[str, str], ProxyProcess],
    tmp_path: Path,
    answer_901: bool,
) -> None:
    server = server_factory(*(["--answer-901"] if answer_901 else []))
    proxy = proxy_factory(server.address, "always")
    client = client_factory("gina", proxy.address)
    source = write_random_file(tmp_path / "doomed.bin", 20_000, seed=4)
    run = client.run([source])
    assert run.returncode == ExitCode.INTEGRITY_FAILED, run.stderr
    assert [e["attempt"] for e in run.events if e["event"] == "crc_mismatch"] == [1, 2, 3, 4]
    assert "integrity" in run.stderr.lower() or "crc" in run.stderr.lower()
    assert not server.stored(client.client_id_hex, "doomed.bin").exists()
    assert list((server.data_dir / "tmp").iterdir()) == []
    outcomes = [r["outcome"] for r in server.logs() if r.get("event") == "transfer"]
    assert outcomes[-1] == "gave_up"


def test_a_path_in_the_file_name_is_stored_inside_the_clients_directory(
    server: ServerProcess,
) -> None:
    raw = RawClient(server.address)
    session = raw.handshake("mallory")
    raw.send_file("../../escaped.txt", b"not where you think")
    raw.close()
    client_dir = server.data_dir / "files" / session.client_id.hex()
    assert (client_dir / "escaped.txt").read_bytes() == b"not where you think"
    stored = sorted(
        p.relative_to(server.data_dir)
        for p in server.data_dir.rglob("*")
        if p.is_file()
        and not p.name.startswith("eft.sqlite3")
        and p.name not in ("server.key", "eft.lock")
    )
    assert stored == [Path("files") / session.client_id.hex() / "escaped.txt"]
    assert not (server.data_dir.parent / "escaped.txt").exists()


def test_a_malformed_request_gets_1607_while_another_transfer_completes(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    source = write_random_file(tmp_path / "steady.bin", 30 * MiB, seed=5)
    client = client_factory("hank", server.address)
    proc = client.start([source], "--packet-size", "4096")
    temporary = server.data_dir / "tmp"
    wait_until(lambda: any(temporary.iterdir()) or proc.poll() is not None, "the upload")
    with paused(proc):  # the bad requests arrive while the upload is open
        assert any(temporary.iterdir()), "the upload was over before the bad requests"
        raw = RawClient(server.address)
        bad = RegisterRequest(bytes(16), "ivan").encode()
        raw.send(bad[:19] + (300).to_bytes(4, "little") + bad[23:] + bytes(45))  # wrong size
        assert isinstance(raw.receive(), ServerError)
        raw.send(bytes(16) + b"\x03" + (999).to_bytes(2, "little") + bytes(4))  # unknown code
        assert isinstance(raw.receive(), ServerError)
        raw.close()
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    assert _same_content(server.stored(client.client_id_hex, "steady.bin"), source)
    reasons = [r["reason"] for r in server.logs() if r.get("event") == "request_rejected"]
    assert reasons == ["bad_payload_size", "unknown_code"]
