"""Two replicas behind the real HAProxy, one PostgreSQL registry and one server key:
a replica killed in the middle of an upload, and the client carries on through HAProxy
on the other one."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_lab.haproxy import HAProxyProcess
from tests.support.gated_relay import GatedRelay
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file

MiB = 1 << 20


def _serving(replicas: dict[str, ServerProcess]) -> tuple[str, str]:
    """The replica holding the client's session, and the other."""
    holding = [
        name
        for name, replica in replicas.items()
        if any(r.get("event") == "connection_opened" for r in replica.logs())
    ]
    assert len(holding) == 1, holding
    (other,) = set(replicas) - set(holding)
    return holding[0], other


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_replica_killed_mid_upload(
    protocol: int,
    replica_factory: Callable[[str], ServerProcess],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    replicas = {"r1": replica_factory("r1"), "r2": replica_factory("r2")}
    front = haproxy_factory(replicas)
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    size = 6 * MiB + 5
    source = write_random_file(tmp_path / "big.bin", size, seed=protocol)
    # The upload stops at a known byte while the test kills its replica.
    relay = relay_factory(front.bind, size // 3)
    client = client_factory(f"dana{protocol}", relay.address)
    client.protocol = protocol
    proc = client.start([source])
    assert relay.held.wait(60)
    victim, survivor = _serving(replicas)
    replicas[victim].stop(signal.SIGKILL)
    relay.release()
    run = finish(proc)
    assert run.returncode == 0, run.stderr
    kinds = run.kinds()
    assert "connection_retry" in kinds, kinds  # through HAProxy again, to the survivor
    if protocol == 3:
        # Version 3 has no resume: the file starts again, on the survivor, which knows
        # the client (and its new AES key) from the shared registry.
        assert "reconnected" in kinds, kinds
        stored = replicas[survivor].data_dir / "files" / client.client_id_hex / "big.bin"
    else:
        # The same server key on both (one identity): the client's pin holds. Its
        # unfinished upload is on the dead replica's disk (the local store of unfinished
        # uploads is per replica), so the survivor has nothing of it and the client
        # starts the file again; resuming there needs a shared store (S3: STORAGE-S3.md).
        assert "restarting" in kinds, kinds
        stored = replicas[survivor].data_dir / "v4" / "files" / client.client_id_hex / "big.bin"
    assert stored.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_replica_hung_mid_upload(
    protocol: int,
    replica_factory: Callable[[str], ServerProcess],
    haproxy_factory: Callable[[dict[str, ServerProcess]], HAProxyProcess],
    relay_factory: Callable[[str, int], GatedRelay],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """A SIGSTOPped replica keeps its sockets: only the app-level check sees it, marks
    it down, and on-marked-down shutdown-sessions cuts its clients, who then finish on
    the other replica."""
    replicas = {"r1": replica_factory("r1"), "r2": replica_factory("r2")}
    front = haproxy_factory(replicas)
    assert front.wait_for_states({"r1": "UP", "r2": "UP"}) == {"r1": "UP", "r2": "UP"}
    size = 6 * MiB + 7
    source = write_random_file(tmp_path / "big.bin", size, seed=10 + protocol)
    relay = relay_factory(front.bind, size // 3)
    client = client_factory(f"hana{protocol}", relay.address)
    client.protocol = protocol
    proc = client.start([source])
    assert relay.held.wait(60)
    hung, survivor = _serving(replicas)
    hung_process = replicas[hung].proc
    assert hung_process is not None
    os.kill(hung_process.pid, signal.SIGSTOP)
    try:
        states = front.wait_for_states({hung: "DOWN"})
        assert states == {hung: "DOWN", survivor: "UP"}
        relay.release()
        run = finish(proc)
    finally:
        os.kill(hung_process.pid, signal.SIGCONT)
    assert run.returncode == 0, run.stderr
    assert "connection_retry" in run.kinds(), run.kinds()
    files = "files" if protocol == 3 else "v4/files"
    stored = replicas[survivor].data_dir / files / client.client_id_hex / "big.bin"
    assert stored.read_bytes() == source.read_bytes()
