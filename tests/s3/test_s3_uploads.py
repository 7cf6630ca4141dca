"""Files into a real S3 (SeaweedFS) through real clients: byte-identical objects that
appear only once verified, and nothing left behind by an attempt that failed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from eft_protocol.wire import CrcGiveUpRequest
from tests.s3.conftest import v3_key, v4_key
from tests.support.processes import ClientDir, ProxyProcess, ServerProcess, write_random_file
from tests.support.raw_client import RawClient
from tests.support.seaweedfs import SeaweedFS

MiB = 1 << 20


def test_version_3_and_4_files_are_stored_byte_for_byte(
    s3_server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
) -> None:
    # 12 MiB + 3: three parts of 5 MiB for each version, the last one short.
    big = write_random_file(tmp_path / "big.bin", 12 * MiB + 3, seed=1)
    empty = write_random_file(tmp_path / "empty.bin", 0)
    old = client_factory("olga", s3_server.address)
    run = old.run([big, empty])
    assert run.returncode == 0, run.stderr
    new = client_factory("nina", s3_server.address)
    new.protocol = 4
    run = new.run([big, empty])
    assert run.returncode == 0, run.stderr
    for key in (v3_key(old.client_id_hex, "big.bin"), v4_key(new.client_id_hex, "big.bin")):
        assert seaweedfs.object_bytes(bucket, key) == big.read_bytes(), key
    for key in (v3_key(old.client_id_hex, "empty.bin"), v4_key(new.client_id_hex, "empty.bin")):
        assert seaweedfs.object_bytes(bucket, key) == b"", key
    seaweedfs.wait_for_unfinished(bucket, [])


def test_a_version_3_file_appears_only_on_900(
    s3_server: ServerProcess, seaweedfs: SeaweedFS, bucket: str
) -> None:
    data = bytes(range(256)) * 30_000  # 7.3 MiB: a whole part sent before the verdict
    client = RawClient(s3_server.address)
    session = client.handshake("vera")
    key = v3_key(client.client_id.hex(), "a.bin")
    sender = session.begin_file("a.bin", len(data), 4096)
    client.send(*sender.feed(data), *sender.finish())
    reply = session.receive(client.receive())  # 1603: received, CRC given
    assert seaweedfs.object_bytes(bucket, key) is None
    assert [u["Key"] for u in seaweedfs.unfinished_uploads(bucket)] == [key]
    client.send(*reply.send)  # 900
    reply = session.receive(client.receive())
    assert reply.file_verified
    assert seaweedfs.object_bytes(bucket, key) == data  # 1604 came after the completion
    seaweedfs.wait_for_unfinished(bucket, [])
    client.close()


def test_902_aborts_the_multipart_upload(
    s3_server: ServerProcess, seaweedfs: SeaweedFS, bucket: str
) -> None:
    data = b"x" * (6 * MiB)
    client = RawClient(s3_server.address)
    session = client.handshake("gus")
    sender = session.begin_file("g.bin", len(data), 4096)
    client.send(*sender.feed(data), *sender.finish())
    session.receive(client.receive())  # 1603
    assert len(seaweedfs.unfinished_uploads(bucket)) == 1
    client.send(CrcGiveUpRequest(client.client_id, "g.bin").encode())
    client.receive()  # 1604: given up, and aborted before it
    seaweedfs.wait_for_unfinished(bucket, [])
    assert seaweedfs.object_bytes(bucket, v3_key(client.client_id.hex(), "g.bin")) is None
    client.close()


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    """Poll an S3 listing until it shows what the server did (an abort in flight)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def test_a_client_gone_mid_file_leaves_no_object_and_no_upload(
    s3_server: ServerProcess, seaweedfs: SeaweedFS, bucket: str
) -> None:
    data = b"y" * (8 * MiB)
    client = RawClient(s3_server.address)
    session = client.handshake("dora")
    sender = session.begin_file("d.bin", len(data), 4096)
    frames = sender.feed(data)
    client.send(*frames[: len(frames) * 3 // 4])  # a whole part (5 MiB) is in S3 by then
    key = v3_key(client.client_id.hex(), "d.bin")
    _wait_until(lambda: len(seaweedfs.unfinished_uploads(bucket)) == 1, "the upload started")
    client.close()
    _wait_until(lambda: seaweedfs.unfinished_uploads(bucket) == [], "the upload aborted")
    assert seaweedfs.object_bytes(bucket, key) is None


def test_a_version_4_upload_cut_resumes_the_same_multipart_upload(
    s3_server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    seaweedfs: SeaweedFS,
    bucket: str,
    tmp_path: Path,
) -> None:
    size = 24 * MiB + 5
    proxy = proxy_factory(s3_server.address, "never", "--cut-after", str(size // 2))
    client = client_factory("rosa", proxy.address)
    client.protocol = 4
    source = write_random_file(tmp_path / "half.bin", size, seed=7)
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    resuming = next(e for e in run.events if e["event"] == "resuming")
    assert 35 <= resuming["percent"] <= 55, resuming  # nothing acknowledged was lost
    assert seaweedfs.object_bytes(bucket, v4_key(client.client_id_hex, "half.bin")) == (
        source.read_bytes()
    )
    logs = s3_server.logs()
    started = [r["s3_upload_id"] for r in logs if r.get("event") == "s3_upload_started"]
    resumed = [r for r in logs if r.get("event") == "s3_upload_resumed"]
    assert len(started) == 1 and len(resumed) == 1, (started, resumed)
    assert resumed[0]["s3_upload_id"] == started[0]  # the same multipart upload, continued
    assert resumed[0]["parts"] >= 2  # 5 MiB parts: at least two were in S3 at the cut
    seaweedfs.wait_for_unfinished(bucket, [])
    assert not any((s3_server.data_dir / "v4" / "partial-s3").glob("*/*"))
