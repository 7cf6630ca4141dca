"""Broken version-4 uploads kept in S3 obey the limits of the local ones: beyond
``--max-partial-uploads-per-client`` the oldest idle one is aborted, and one nobody
resumes within ``--resume-ttl`` is aborted by the sweep."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hostile.helpers import wait_until
from tests.support.gated_relay import GatedRelay
from tests.support.processes import ClientDir, ServerProcess, write_random_file
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20


@pytest.fixture
def relays() -> Iterator[list[GatedRelay]]:
    made: list[GatedRelay] = []
    yield made
    for relay in made:
        relay.close()


def _break_off(
    server: ServerProcess, client: ClientDir, source: Path, relays: list[GatedRelay]
) -> None:
    """Start sending ``source``, hold it at 60 %, kill the client: the server keeps the
    upload (suspended) once the relay lets the dead connection's end through."""
    relays.append(GatedRelay(server.address, source.stat().st_size * 3 // 5))
    client.server = relays[-1].address
    proc = client.start([source])
    assert relays[-1].held.wait(120), "the client never reached the hold"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    relays[-1].release()


def _suspended(server: ServerProcess) -> int:
    return sum(
        1 for r in server.logs() if r.get("event") == "transfer" and r.get("outcome") == "aborted"
    )


def test_the_oldest_broken_upload_beyond_the_limit_is_aborted(
    s3_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    relays: list[GatedRelay],
) -> None:
    server = s3_server_factory("--max-partial-uploads-per-client", "1")
    client = client_factory("quinn", server.address)
    client.protocol = 4
    first = write_random_file(tmp_path / "first.bin", 8 * MiB, seed=1)
    second = write_random_file(tmp_path / "second.bin", 8 * MiB, seed=2)
    _break_off(server, client, first, relays)
    wait_until(lambda: _suspended(server) == 1, "the first upload suspended")
    seaweedfs.wait_for_unfinished(bucket, ["first.bin"])
    _break_off(server, client, second, relays)
    wait_until(
        lambda: any(r.get("event") == "partial_upload_dropped" for r in server.logs()),
        "the first upload dropped",
    )
    seaweedfs.wait_for_unfinished(bucket, ["second.bin"])


def test_a_broken_upload_nobody_resumes_is_aborted_after_the_resume_ttl(
    s3_server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    relays: list[GatedRelay],
) -> None:
    server = s3_server_factory("--resume-ttl", "1", "--sweep-interval", "0.5")
    client = client_factory("tess", server.address)
    client.protocol = 4
    _break_off(server, client, write_random_file(tmp_path / "t.bin", 8 * MiB, seed=3), relays)
    wait_until(
        lambda: any(r.get("event") == "leftovers_removed" for r in server.logs()),
        "the sweep",
    )
    seaweedfs.wait_for_unfinished(bucket, [])
    assert not any((server.data_dir / "v4" / "partial-s3").glob("*/*"))
