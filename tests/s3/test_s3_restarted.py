"""The S3 server killed (SIGKILL) in the middle of an upload and started again on the
same data directory: the client's retry ends with the identical file, or with a clear
error and then the identical file on the next run; never a wrong object."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from tests.s3.conftest import v3_key, v4_key
from tests.support.gated_relay import GatedRelay
from tests.support.processes import (
    ClientDir,
    ClientRun,
    ServerProcess,
    finish,
    write_random_file,
)
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20


def _held_with_a_part_in_s3(relay: GatedRelay, seaweedfs: SeaweedFS, bucket: str) -> None:
    """The client is held at 40 % (the relay): wait for that, then for the server's
    first part to be in S3 (polled: S3 is its only witness)."""
    assert relay.held.wait(120), "the client never reached the hold"
    client = seaweedfs.client()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for upload in seaweedfs.unfinished_uploads(bucket):
            parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return
        time.sleep(0.05)
    raise AssertionError("no part reached S3 within 120 s")


@pytest.fixture
def relay_factory() -> Iterator[Callable[[str, int], GatedRelay]]:
    relays: list[GatedRelay] = []

    def make(target: str, hold_after: int) -> GatedRelay:
        relays.append(GatedRelay(target, hold_after))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


@pytest.mark.parametrize("protocol", [3, 4])
def test_s3_restarted_while_the_upload_waits_for_its_client(
    protocol: int,
    s3_server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    relay_factory: Callable[[str, int], GatedRelay],
) -> None:
    """S3 comes back before the server needs it again: the same multipart upload goes on
    (its parts survived the SIGKILL) and the file is identical."""
    size = 24 * MiB + 11
    source = write_random_file(tmp_path / "big.bin", size, seed=protocol)
    relay = relay_factory(s3_server.address, size * 2 // 5)
    client = client_factory(f"kim{protocol}", relay.address)
    client.protocol = protocol
    proc = client.start([source])
    _held_with_a_part_in_s3(relay, seaweedfs, bucket)
    seaweedfs.kill()
    seaweedfs.start()
    relay.release()
    run = finish(proc)
    _check(run, client, source, seaweedfs, bucket)


@pytest.mark.parametrize("protocol", [3, 4])
def test_s3_down_while_the_server_writes(
    protocol: int,
    s3_server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    relay_factory: Callable[[str, int], GatedRelay],
) -> None:
    """S3 is still down when the server sends its next part: after botocore's retries
    the client is told the server could not store the file (a clear error), nothing
    is stored, and once S3 is back the next run stores it identical."""
    size = 24 * MiB + 11
    source = write_random_file(tmp_path / "big.bin", size, seed=10 + protocol)
    relay = relay_factory(s3_server.address, size * 2 // 5)
    client = client_factory(f"lea{protocol}", relay.address)
    client.protocol = protocol
    proc = client.start([source])
    _held_with_a_part_in_s3(relay, seaweedfs, bucket)
    seaweedfs.kill()
    relay.release()
    try:
        run = finish(proc)
    finally:
        seaweedfs.start()
    assert run.returncode in (ExitCode.SERVER_ERROR, ExitCode.SERVER_STORAGE), run.stderr
    key = (v3_key if protocol == 3 else v4_key)(client.client_id_hex, source.name)
    assert seaweedfs.object_bytes(bucket, key) is None  # no object from the failed run
    _check(client.run([source]), client, source, seaweedfs, bucket)


def _check(
    run: ClientRun, client: ClientDir, source: Path, seaweedfs: SeaweedFS, bucket: str
) -> None:
    key = (v3_key if client.protocol == 3 else v4_key)(client.client_id_hex, source.name)
    assert run.returncode == 0, run.stderr
    assert seaweedfs.object_bytes(bucket, key) == source.read_bytes()


def test_an_eft_server_killed_mid_upload_aborts_it_at_start_and_the_client_starts_again(
    s3_server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    relay_factory: Callable[[str, int], GatedRelay],
) -> None:
    """The hasher of an unfinished S3 upload lives in the server's memory: after a crash
    the new server aborts the old multipart upload before it listens, and the client's
    resume starts at chunk 1 (docs/STORAGE-S3.md, "Resuming a version-4 upload")."""
    size = 16 * MiB + 3
    source = write_random_file(tmp_path / "crash.bin", size, seed=21)
    relay = relay_factory(s3_server.address, size // 2)
    client = client_factory("cora", relay.address)
    client.protocol = 4
    proc = client.start([source])
    _held_with_a_part_in_s3(relay, seaweedfs, bucket)
    s3_server.restart(signal.SIGKILL)
    recovered = next(r for r in s3_server.logs() if r.get("event") == "recovered")
    assert recovered["v4_partial_leftovers"] == 1
    seaweedfs.wait_for_unfinished(bucket, [])  # aborted before listening
    relay.release()
    run = finish(proc)
    _check(run, client, source, seaweedfs, bucket)
    seaweedfs.wait_for_unfinished(bucket, [])
