"""A multipart upload S3 will not abort keeps its record: the record is the only note
of the upload's id, so deleting it first would leave the parts in the bucket, never
reclaimed. The sweep, the limits, a discard and a takeover all leave it for a later
try, go on with their other work, and the later try (S3 healthy again) removes both:
for the uploads shared by replicas (s3_shared_uploads.py, the record a row in
PostgreSQL) and for a single server's (s3_unfinished.py, the record a sidecar file).

S3 refuses for real: SeaweedFS behind a relay that answers the AbortMultipartUpload
of the upload ids named (or the DeleteObject of the keys named) with 403 AccessDenied,
as for credentials without ``s3:AbortMultipartUpload``, and passes everything else
through."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from eft_protocol.v4.records import CHUNK
from eft_server.partial_uploads import PartialQuota
from eft_server.pg_connect import PgSettings
from eft_server.s3_settings import parse_store_url, s3_settings
from eft_server.s3_store import S3Client
from eft_server.s3_unfinished import S3UnfinishedUploads
from eft_server.storage import StorageError
from tests.s3.conftest import PREFIX
from tests.s3.shared_support import (
    BLAKE3,
    CLIENT,
    MiB,
    advisory_locks,
    events,
    file_key,
    parts,
    record,
    replica,
    rows,
    staged,
)
from tests.support.relay import Direction, ThreadedRelay
from tests.support.seaweedfs import SeaweedFS

KEEP = b"k" * 16  # an upload id no record has: the limits spare none of the test's
_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)
FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_BODY) + _BODY
)


class AbortRefusingRelay(ThreadedRelay):
    """A TCP relay to the S3 server that reads each request's head and body (by its
    ``Content-Length``) and answers itself, 403 AccessDenied, a DELETE whose target
    holds a text in ``refused`` (an upload id: its abort; a key: its deletion);
    ``refusals`` counts those. Threads, one pair per
    connection; everything on 127.0.0.1."""

    def __init__(self, endpoint: str) -> None:
        self.refused: set[str] = set()
        self.refusals = 0
        super().__init__(endpoint)

    def _directions(self, client: socket.socket, server: socket.socket) -> list[Direction]:
        return [(self._requests, (client, server)), (self._answers, (server, client))]

    def _refuses(self, line: bytes) -> bool:
        method, _, rest = line.partition(b" ")
        target = rest.partition(b" ")[0].decode()
        return method == b"DELETE" and any(text in target for text in self.refused)

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in pending:
                    data = client.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                fields = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
                named = {name.strip().lower(): value.strip() for name, _, value in fields}
                # every call here has a body of known length (botocore sends one)
                assert b"transfer-encoding" not in named, head
                left = int(named.get(b"content-length", b"0"))
                refused = self._refuses(head.split(b"\r\n", 1)[0])
                if not refused:
                    server.sendall(head + b"\r\n\r\n")
                while left:
                    if not pending:
                        pending = client.recv(min(65536, left))
                        if not pending:
                            return
                    body, pending = pending[:left], pending[left:]
                    left -= len(body)
                    if not refused:
                        server.sendall(body)
                if refused:
                    self.refusals += 1
                    client.sendall(FORBIDDEN)

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                client.sendall(data)
        for sock in (server, client):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(seaweedfs: SeaweedFS) -> Any:
    made = AbortRefusingRelay(seaweedfs.endpoint)
    yield made
    made.close()


def in_progress(seaweedfs: SeaweedFS, bucket: str) -> set[str]:
    """The upload ids of the multipart uploads S3 still holds (what the bucket bills)."""
    answer = seaweedfs.client().list_multipart_uploads(Bucket=bucket)
    return {upload["UploadId"] for upload in answer.get("Uploads", [])}


async def suspended(store: Any, upload_id: bytes, name: str) -> Any:
    """An upload with a tail staged, suspended: idle, locked by nobody."""
    upload = await store.open(CLIENT, upload_id, name, 100, BLAKE3)
    await upload.write(1, upload_id[:1] * 10)
    await upload.suspend()
    return upload


def test_the_sweep_keeps_a_record_s3_would_not_abort_and_a_later_sweep_removes_it(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, relay: AbortRefusingRelay
) -> None:
    """The refused upload's record, staged tail and multipart upload all stay (and the
    warning names it); the sweep goes on and removes the other. The next sweep, S3
    healthy, aborts it and removes the rest."""
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with replica(seaweedfs, bucket, pg, relay.endpoint) as store:
            kept = await suspended(store, b"a" * 16, "a.bin")
            gone = await suspended(store, b"b" * 16, "b.bin")
            seen["ids"] = kept.s3_upload_id, gone.s3_upload_id
            relay.refused.add(kept.s3_upload_id)
            seen["swept"] = await store.remove_expired(0)
            seen["left"] = await rows(
                pg, "SELECT file_name, object_key, store_upload_id FROM uploads_v4"
            )
            seen["holding"] = in_progress(seaweedfs, bucket)
            seen["staged"] = set(staged(seaweedfs, bucket))
            relay.refused.clear()
            seen["swept again"] = await store.remove_expired(0)

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    kept_id, gone_id = seen["ids"]
    assert seen["left"] == [
        {"file_name": "a.bin", "object_key": file_key(CLIENT, "a.bin"), "store_upload_id": kept_id}
    ]
    assert kept_id in seen["holding"] and gone_id not in seen["holding"]
    assert seen["swept"] == 1 and relay.refusals >= 1
    assert seen["staged"] == {f"{CLIENT.hex()}/{'61' * 16}/g1-tail0"}  # a's tail
    (warned,) = events(logs, "s3_abort_failed")
    assert warned["key"] == file_key(CLIENT, "a.bin") and "AccessDenied" in warned["error"]
    assert seen["swept again"] == 1
    assert asyncio.run(rows(pg, "SELECT * FROM uploads_v4")) == []
    assert in_progress(seaweedfs, bucket) == set()
    assert staged(seaweedfs, bucket) == {}


def test_the_limits_go_on_past_a_record_s3_would_not_abort_and_still_count_it(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, relay: AbortRefusingRelay
) -> None:
    """Over the limit of one upload with two: the older, refused, is not dropped (its
    parts are still stored, so it still counts) and the newer goes in its place; only
    that one is reported dropped. With S3 healthy again, a tighter limit drops it."""
    dropped: list[tuple[str, int]] = []
    seen: dict[str, Any] = {}

    async def names() -> set[str]:
        return {r["file_name"] for r in await rows(pg, "SELECT file_name FROM uploads_v4")}

    async def scenario() -> None:
        async with replica(
            seaweedfs, bucket, pg, relay.endpoint, on_drop=lambda r, n: dropped.append((r, n))
        ) as store:
            older = await suspended(store, b"a" * 16, "a.bin")
            newer = await suspended(store, b"b" * 16, "b.bin")
            seen["ids"] = older.s3_upload_id, newer.s3_upload_id
            relay.refused.add(older.s3_upload_id)
            store.quota = PartialQuota(uploads_per_client=1)
            await store.enforce_quota(CLIENT, KEEP)
            seen["left"], seen["holding"] = await names(), in_progress(seaweedfs, bucket)
            seen["dropped"] = list(dropped)
            relay.refused.clear()
            store.quota = PartialQuota(uploads_per_client=0)
            await store.enforce_quota(CLIENT, KEEP)
            seen["left at last"] = await names()

    asyncio.run(scenario())
    older_id, newer_id = seen["ids"]
    assert seen["left"] == {"a.bin"}
    assert older_id in seen["holding"] and newer_id not in seen["holding"]
    assert seen["dropped"] == [("client_uploads", 10)]  # the newer only
    assert dropped == [("client_uploads", 10), ("client_uploads", 10)]
    assert seen["left at last"] == set() and in_progress(seaweedfs, bucket) == set()
    assert staged(seaweedfs, bucket) == {}


def test_a_discard_s3_would_not_abort_keeps_a_record_to_start_from_that_the_sweep_removes(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, relay: AbortRefusingRelay
) -> None:
    """The discarded upload's record stays, naming the multipart upload, with nothing
    to resume from (no part, no tail, offset 0) and idle since ever; the lock is given
    back. The next sweep, S3 healthy, aborts and removes it."""

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], set[str], int, int]:
        async with replica(seaweedfs, bucket, pg, relay.endpoint) as store:
            upload = await store.open(CLIENT, b"d" * 16, "d.bin", 6 * MiB, BLAKE3)
            for index in range(1, 6):  # a whole part: staged and recorded
                await upload.write(index, b"d" * MiB)
            relay.refused.add(upload.s3_upload_id)
            await upload.discard()
            kept, kept_parts = await record(pg), await parts(pg)
            holding = in_progress(seaweedfs, bucket) & {upload.s3_upload_id}
            locks = await advisory_locks(pg)
            relay.refused.clear()
            return kept, kept_parts, holding, locks, await store.remove_expired(3600)

    kept, kept_parts, holding, locks, swept = asyncio.run(scenario())
    assert (kept["durable_offset"], kept["tail_key"], kept["updated_at"]) == (0, None, 0)
    assert kept["object_key"] == file_key(CLIENT, "d.bin") and kept_parts == []
    assert len(holding) == 1 and locks == 0 and swept == 1
    assert asyncio.run(rows(pg, "SELECT * FROM uploads_v4")) == []
    assert in_progress(seaweedfs, bucket) == set() and staged(seaweedfs, bucket) == {}


def test_a_takeover_s3_would_not_abort_fails_and_keeps_the_upload_for_a_later_open(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, relay: AbortRefusingRelay
) -> None:
    """A resume must abort the previous multipart upload before it starts its own: if
    S3 refuses, the open fails as a storage error and the record still names the
    previous one. The next open, S3 healthy, takes it over."""

    async def scenario() -> tuple[str, str, str]:
        async with replica(seaweedfs, bucket, pg, relay.endpoint) as store:
            first = await suspended(store, b"t" * 16, "t.bin")
            relay.refused.add(first.s3_upload_id)
            with pytest.raises(StorageError, match="could not be aborted"):
                await store.open(CLIENT, b"t" * 16, "t.bin", 100, BLAKE3)
            named = (await record(pg))["store_upload_id"]
            relay.refused.clear()
            again = await store.open(CLIENT, b"t" * 16, "t.bin", 100, BLAKE3)
            await again.discard()
            return first.s3_upload_id, named, again.s3_upload_id

    previous, named, taken = asyncio.run(scenario())
    assert named == previous != taken
    assert in_progress(seaweedfs, bucket) == set()
    assert asyncio.run(rows(pg, "SELECT * FROM uploads_v4")) == []


def test_a_sweep_that_aborted_but_could_not_delete_the_staged_tail_keeps_the_record(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, relay: AbortRefusingRelay
) -> None:
    """The multipart upload is gone, the tail is not: the record stays (the sweep that
    lists the staged objects leaves those with a record alone), no longer naming a
    multipart upload, so no resume starts from it and the retry aborts nothing. The
    next sweep deletes the tail and the record."""
    tail = f"{'61' * 16}/g1-tail0"

    async def scenario() -> tuple[int, dict[str, Any], set[str], int, int]:
        async with replica(seaweedfs, bucket, pg, relay.endpoint) as store:
            await suspended(store, b"a" * 16, "a.bin")
            relay.refused.add(tail)
            swept = await store.remove_expired(0)
            kept, holding = await record(pg), in_progress(seaweedfs, bucket)
            relay.refused.clear()
            return swept, kept, holding, relay.refusals, await store.remove_expired(0)

    swept, kept, holding, refusals, swept_again = asyncio.run(scenario())
    assert (swept, kept["object_key"], holding, refusals) == (0, None, set(), 1)
    assert swept_again == 1
    assert asyncio.run(rows(pg, "SELECT * FROM uploads_v4")) == []
    assert staged(seaweedfs, bucket) == {}


# --- a single server's unfinished uploads (s3_unfinished.py) ------------------------------


@contextlib.asynccontextmanager
async def single(
    seaweedfs: SeaweedFS, bucket: str, relay: AbortRefusingRelay, tmp_path: Path, **options: Any
) -> AsyncIterator[S3UnfinishedUploads]:
    """A single server's unfinished uploads, its S3 client behind the relay."""
    env = seaweedfs.server_env()
    env["EFT_S3_ENDPOINT"] = relay.endpoint
    client = S3Client(s3_settings(parse_store_url(f"s3://{bucket}/{PREFIX}"), env))
    await client.open()
    try:
        yield S3UnfinishedUploads(client, tmp_path, **options)
    finally:
        await client.close()


async def broken_off(store: S3UnfinishedUploads, upload_id: bytes) -> Any:
    """An upload of one chunk (of two) suspended: a tail on disk, a multipart upload."""
    upload = await store.open(CLIENT, upload_id, upload_id.hex() + ".bin", 2 * CHUNK, BLAKE3)
    await upload.write(1, upload_id[:1] * CHUNK)
    await upload.suspend()
    return upload


def sidecars(store: S3UnfinishedUploads) -> set[str]:
    return {path.stem for path in store.state_dir.glob("*/*.json")}


def test_a_single_servers_sweep_keeps_an_upload_s3_would_not_abort_for_the_next(
    seaweedfs: SeaweedFS, bucket: str, relay: AbortRefusingRelay, tmp_path: Path
) -> None:
    """The refused upload keeps its sidecar (the multipart upload's only note) and its
    tail; the other goes. The next sweep, S3 healthy, aborts it and removes both."""
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with single(seaweedfs, bucket, relay, tmp_path) as store:
            kept = await broken_off(store, b"a" * 16)
            gone = await broken_off(store, b"b" * 16)
            seen["ids"] = kept._writer.upload_id, gone._writer.upload_id
            relay.refused.add(kept._writer.upload_id)
            seen["swept"] = await store.remove_expired(0)
            seen["sidecars"], seen["holding"] = sidecars(store), in_progress(seaweedfs, bucket)
            seen["tails"] = {path.stem for path in store.state_dir.glob("*/*.tail")}
            relay.refused.clear()
            seen["swept again"] = await store.remove_expired(0)
            seen["sidecars at last"] = sidecars(store)

    asyncio.run(scenario())
    kept_id, gone_id = seen["ids"]
    assert seen["sidecars"] == {"61" * 16} and seen["tails"] == {"61" * 16}
    assert kept_id in seen["holding"] and gone_id not in seen["holding"]
    assert seen["swept"] == 1 and seen["swept again"] == 1
    assert seen["sidecars at last"] == set() and in_progress(seaweedfs, bucket) == set()


def test_a_single_servers_limits_go_on_past_an_upload_s3_would_not_abort(
    seaweedfs: SeaweedFS, bucket: str, relay: AbortRefusingRelay, tmp_path: Path
) -> None:
    """Over the limit of one upload with two: the older, refused, stays (and counts),
    the newer is dropped in its place and alone reported."""
    dropped: list[tuple[str, int]] = []
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        on_drop = lambda r, n: dropped.append((r, n))  # noqa: E731
        async with single(seaweedfs, bucket, relay, tmp_path, on_drop=on_drop) as store:
            older = await broken_off(store, b"a" * 16)
            newer = await broken_off(store, b"b" * 16)
            seen["ids"] = older._writer.upload_id, newer._writer.upload_id
            relay.refused.add(older._writer.upload_id)
            store.quota = PartialQuota(uploads_per_client=1)
            await store.enforce_quota(CLIENT.hex())
            seen["sidecars"], seen["holding"] = sidecars(store), in_progress(seaweedfs, bucket)
            seen["usage"] = store.usage()
            relay.refused.clear()
            store.quota = PartialQuota(uploads_per_client=0)
            await store.enforce_quota(CLIENT.hex())
            seen["sidecars at last"] = sidecars(store)

    asyncio.run(scenario())
    older_id, newer_id = seen["ids"]
    assert seen["sidecars"] == {"61" * 16} and seen["usage"] == (1, CHUNK)
    assert older_id in seen["holding"] and newer_id not in seen["holding"]
    assert dropped == [("client_uploads", CHUNK), ("client_uploads", CHUNK)]
    assert seen["sidecars at last"] == set() and in_progress(seaweedfs, bucket) == set()


def test_a_single_servers_discard_s3_would_not_abort_is_left_to_the_sweep(
    seaweedfs: SeaweedFS, bucket: str, relay: AbortRefusingRelay, tmp_path: Path
) -> None:
    """The sidecar stays (nothing resumes it: no digest state is kept), and an open of
    the same upload meanwhile fails rather than lose it; the sweep, S3 healthy, aborts
    it and removes the sidecar."""
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with single(seaweedfs, bucket, relay, tmp_path) as store:
            upload = await store.open(CLIENT, b"d" * 16, "d.bin", 2 * CHUNK, BLAKE3)
            await upload.write(1, b"d" * CHUNK)
            relay.refused.add(upload._writer.upload_id)
            await upload.discard()
            seen["sidecars"], seen["holding"] = sidecars(store), in_progress(seaweedfs, bucket)
            with pytest.raises(StorageError, match="could not be removed"):
                await store.open(CLIENT, b"d" * 16, "d.bin", 2 * CHUNK, BLAKE3)
            relay.refused.clear()
            seen["swept"] = await store.remove_expired(3600)
            seen["sidecars at last"] = sidecars(store)

    asyncio.run(scenario())
    assert seen["sidecars"] == {"64" * 16} and len(seen["holding"]) == 1
    assert seen["swept"] == 1 and seen["sidecars at last"] == set()
    assert in_progress(seaweedfs, bucket) == set()
