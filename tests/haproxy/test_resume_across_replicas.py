"""Resume on any replica: two replicas behind HAProxy on one PostgreSQL and one
SeaweedFS (``--store s3://…`` with ``--registry postgresql://…``). A replica dies or
hangs in the middle of a version-4 upload; the client reconnects through HAProxy and the
other replica resumes the upload where the records say (s3_shared_uploads.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_lab.haproxy import HAProxyProcess
from tests.s3.conftest import PREFIX, seaweedfs  # noqa: F401 - a fixture
from tests.support.gated_relay import GatedRelay
from tests.support.postgres import PostgresCluster
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:  # noqa: F811
    return seaweedfs.new_bucket()


@pytest.fixture
def s3_replica_factory(
    replica_factory: Callable[..., ServerProcess],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
) -> Callable[[str], ServerProcess]:
    """A replica with the test's bucket for files and the test's database for records."""

    def make(name: str) -> ServerProcess:
        return replica_factory(
            name, "--store", f"s3://{bucket}/{PREFIX}", env=seaweedfs.server_env()
        )

    return make


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll a replica's log for what it did (it writes a line once it is done)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def _events(replica: ServerProcess, event: str) -> list[dict[str, Any]]:
    return [r for r in replica.logs() if r.get("event") == event]


def _start_cut_upload(
    protocol: int,
    replicas: dict[str, ServerProcess],
    front: HAProxyProcess,
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    source: Path,
) -> tuple[ClientDir, subprocess.Popen[bytes], GatedRelay, str, str]:
    """The client's upload held by the relay after two parts are recorded (v4)."""
    relay = relay_factory(front.bind, 13 * MiB)
    client = client_factory(f"res{protocol}", relay.address)
    client.protocol = protocol
    proc = client.start([source])
    assert relay.held.wait(60)
    holding = [n for n, r in replicas.items() if _events(r, "connection_opened")]
    assert len(holding) == 1, holding
    victim = holding[0]
    (survivor,) = set(replicas) - {victim}
    if protocol == 4:  # the replica recorded whole parts: the resume starts after them
        _wait_for(
            lambda: len(_events(replicas[victim], "s3_part_recorded")) >= 2, "two parts recorded"
        )
    return client, proc, relay, victim, survivor


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_replica_killed_mid_upload_resumes_on_the_other(
    protocol: int,
    s3_replica_factory: Callable[[str], ServerProcess],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    replicas = {"r1": s3_replica_factory("r1"), "r2": s3_replica_factory("r2")}
    front = haproxy_factory(replicas)
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    size = 16 * MiB + 3
    source = write_random_file(tmp_path / "big.bin", size, seed=40 + protocol)
    client, proc, relay, victim, survivor = _start_cut_upload(
        protocol, replicas, front, relay_factory, client_factory, source
    )
    # SIGKILL: no tail is kept, and the upload's lock goes with the replica's session.
    replicas[victim].stop(signal.SIGKILL)
    relay.release()
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    kinds = run.kinds()
    assert "connection_retry" in kinds, kinds
    files = "files" if protocol == 3 else "v4/files"
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/{files}/{client.client_id_hex}/big.bin")
    assert stored == source.read_bytes()
    if protocol == 3:
        assert "reconnected" in kinds, kinds  # no resume in version 3: the file again
        return
    resuming = next(e for e in run.events if e["event"] == "resuming")
    assert resuming["chunk"] > 1, resuming
    (resumed,) = _events(replicas[survivor], "s3_upload_resumed")
    assert int(resumed["offset"]) >= 10 * MiB, resumed  # both recorded parts kept
    assert resumed["generation"] == 2, resumed
    seaweedfs.wait_for_unfinished(bucket, [])  # the victim's multipart upload aborted


def test_a_hung_replica_lets_go_of_the_upload(
    s3_replica_factory: Callable[[str], ServerProcess],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    """A SIGSTOPped replica still holds the upload's lock (its PostgreSQL session lives).
    It cannot answer the request to let go, so the other replica ends its session; woken
    up, it has lost the upload and writes nothing more of it (fenced)."""
    replicas = {"r1": s3_replica_factory("r1"), "r2": s3_replica_factory("r2")}
    front = haproxy_factory(replicas)
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    size = 16 * MiB + 9
    source = write_random_file(tmp_path / "big.bin", size, seed=50)
    client, proc, relay, hung, survivor = _start_cut_upload(
        4, replicas, front, relay_factory, client_factory, source
    )
    hung_process = replicas[hung].proc
    assert hung_process is not None
    os.kill(hung_process.pid, signal.SIGSTOP)
    try:
        assert front.wait_for_states({hung: "DOWN"})[hung] == "DOWN"
        relay.release()
        run = finish(proc)
    finally:
        os.kill(hung_process.pid, signal.SIGCONT)
    assert run.returncode == 0, run.stderr
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{client.client_id_hex}/big.bin")
    assert stored == source.read_bytes()
    assert _events(replicas[survivor], "s3_upload_holder_terminated")
    (resumed,) = _events(replicas[survivor], "s3_upload_resumed")
    assert int(resumed["offset"]) >= 10 * MiB, resumed
    # Woken up, the stale holder learns it lost its locks; nothing it held is written.
    _wait_for(lambda: bool(_events(replicas[hung], "s3_upload_locks_lost")), "fenced")
    assert stored == seaweedfs.object_bytes(
        bucket, f"{PREFIX}/v4/files/{client.client_id_hex}/big.bin"
    )
    seaweedfs.wait_for_unfinished(bucket, [])  # its multipart upload was aborted


def test_postgresql_restarted_mid_upload(
    s3_replica_factory: Callable[[str], ServerProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
    postgres: PostgresCluster,
    tmp_path: Path,
) -> None:
    """The replica's session ends with the restart, and with it the upload's lock: the
    replica cuts the connection writing it (it may no longer claim it), and the
    client's retry resumes after the parts the record holds."""
    replica = s3_replica_factory("r1")
    size = 16 * MiB + 1
    source = write_random_file(tmp_path / "big.bin", size, seed=60)
    relay = relay_factory(replica.address, 13 * MiB)
    client = client_factory("pgres", relay.address)
    client.protocol = 4
    proc = client.start([source])
    assert relay.held.wait(60)
    _wait_for(lambda: len(_events(replica, "s3_part_recorded")) >= 2, "two parts recorded")
    postgres.restart()
    _wait_for(lambda: bool(_events(replica, "s3_upload_locks_lost")), "the locks lost")
    relay.release()
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    assert "connection_retry" in run.kinds(), run.kinds()
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{client.client_id_hex}/big.bin")
    assert stored == source.read_bytes()
    (resumed,) = _events(replica, "s3_upload_resumed")
    assert int(resumed["offset"]) >= 10 * MiB, resumed


def test_a_live_holder_lets_go_at_once_and_keeps_the_tail(
    s3_replica_factory: Callable[[str], ServerProcess],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    """The client is gone but its replica has not noticed (the relay and HAProxy hold
    the connection open). The client comes back; HAProxy (leastconn) sends it to the
    other replica, which asks the holder to let go: the holder cuts the dead connection,
    keeps the tail (past the last whole part) and unlocks, and the resume starts after
    the tail: nothing received is lost, and nobody waited for a timeout."""
    replicas = {"r1": s3_replica_factory("r1"), "r2": s3_replica_factory("r2")}
    front = haproxy_factory(replicas)
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    size = 16 * MiB + 11
    source = write_random_file(tmp_path / "big.bin", size, seed=70)
    client, proc, _relay, holder, survivor = _start_cut_upload(
        4, replicas, front, relay_factory, client_factory, source
    )
    proc.kill()  # the relay keeps its connection open: the holder notices nothing
    proc.wait()
    run = client.run([source])  # through the relay again: its later connections pass
    assert run.returncode == 0, run.stderr
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{client.client_id_hex}/big.bin")
    assert stored == source.read_bytes()
    assert _events(replicas[holder], "upload_taken_elsewhere")
    assert not _events(replicas[survivor], "s3_upload_holder_terminated")  # it let go
    (resumed,) = _events(replicas[survivor], "s3_upload_resumed")
    assert int(resumed["offset"]) > 10 * MiB, resumed  # the tail kept, not only the parts
    assert resumed["tail_bytes"] > 0, resumed
    seaweedfs.wait_for_unfinished(bucket, [])


def test_s3_restarted_mid_upload_the_upload_goes_on(
    s3_replica_factory: Callable[[str], ServerProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    """SeaweedFS killed (SIGKILL) and started again on its data while the upload waits
    for its client: the recorded parts and their objects survived, the same multipart
    upload goes on (no resume needed), and the object is identical."""
    replica = s3_replica_factory("r1")
    size = 16 * MiB + 5
    source = write_random_file(tmp_path / "big.bin", size, seed=80)
    relay = relay_factory(replica.address, 13 * MiB)
    client = client_factory("s3res", relay.address)
    client.protocol = 4
    proc = client.start([source])
    assert relay.held.wait(60)
    _wait_for(lambda: len(_events(replica, "s3_part_recorded")) >= 2, "two parts recorded")
    seaweedfs.kill()
    seaweedfs.start()
    relay.release()
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    stored = seaweedfs.object_bytes(bucket, f"{PREFIX}/v4/files/{client.client_id_hex}/big.bin")
    assert stored == source.read_bytes()
    assert not _events(replica, "s3_upload_resumed")
    seaweedfs.wait_for_unfinished(bucket, [])
