"""Removing the shared unfinished uploads (s3_shared_uploads.py) nobody will finish:
the expiry sweep (records idle too long, and part objects left without a record), the
limits' drops (the least recently written first), and the S3 clean-up they share with
an upload that is finished, discarded or taken over (aborting a multipart upload,
deleting an upload's staged objects).

Apart from the store because it is another job: the store decides who writes an upload
(locks, let-go, fencing); this module only takes what nobody writes, under the same
locks, asked through the store (``_lock_idle``). Every removal is best effort and keeps
the record, the only note of a multipart upload's id, until S3 confirmed the rest is
gone: a failure leaves it to the next sweep or limits' turn.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import asyncpg

from .s3_store import S3Failed
from .storage import StorageError

if TYPE_CHECKING:
    from .s3_shared_uploads import SharedUnfinishedUploads

#: Staged objects per listing in the orphan sweep (S3 lists at most 1,000 at once).
ORPHAN_PAGE = 1000


async def remove_expired(store: SharedUnfinishedUploads, ttl: float) -> int:
    """Records idle ``ttl`` seconds that nobody holds, and part objects left without
    a record. A database away is a storage error (the sweep tries again later)."""
    try:
        return await _remove_expired(store, ttl)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageError(f"the upload records are unreachable: {exc}") from exc


async def _remove_expired(store: SharedUnfinishedUploads, ttl: float) -> int:
    assert store._pool is not None
    rows = await store._pool.fetch(
        "SELECT client_id, upload_id FROM uploads_v4 WHERE updated_at < $1",
        time.time() - ttl,
    )
    removed = await _remove_orphans(store, ttl)
    for row in rows:
        key = await store._lock_idle(row["client_id"], row["upload_id"])
        if key is None:
            continue  # being written: not abandoned
        try:  # one S3 would not abort stays for the next sweep: go on
            if await remove_record(store, row["client_id"], row["upload_id"]):
                removed += 1
        finally:
            await store._unlock(key)
    return removed


async def enforce_quota(store: SharedUnfinishedUploads, client_id: bytes, keep: bytes) -> None:
    """The limits on unfinished uploads, over the cluster's records: the client's,
    then the server's (``--max-partial-*``, counted in acknowledged bytes). The
    least recently written go first; ``keep`` (the upload just opened or suspended)
    and uploads being written (locked, here or elsewhere) are spared. Best effort:
    a failure leaves the limits to the next turn."""
    try:
        await _enforce(store, client_id, keep)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, StorageError) as exc:
        store.log.warning("partial_quota_not_enforced", error=str(exc))


async def _enforce(store: SharedUnfinishedUploads, client_id: bytes, keep: bytes) -> None:
    pool = store._pool
    assert pool is not None
    quota = store.quota
    scopes = (
        (client_id, quota.uploads_per_client, quota.bytes_per_client, "client"),
        (None, quota.uploads, quota.bytes, "server"),
    )
    for only, most, most_bytes, scope in scopes:
        row = await pool.fetchrow(  # one client's, or all ($1 NULL)
            "SELECT count(*), coalesce(sum(durable_offset), 0) FROM uploads_v4"
            " WHERE $1::bytea IS NULL OR client_id = $1",
            only,
        )
        assert row is not None  # an aggregate always answers one row
        count, total = int(row[0]), int(row[1])
        if count <= most and total <= most_bytes:
            continue
        oldest = await pool.fetch(
            "SELECT client_id, upload_id, durable_offset FROM uploads_v4"
            " WHERE $1::bytea IS NULL OR client_id = $1 ORDER BY updated_at",
            only,
        )
        for old in oldest:
            if count <= most and total <= most_bytes:
                break
            ids = (old["client_id"], old["upload_id"])
            if ids == (client_id, keep):
                continue
            key = await store._lock_idle(*ids)
            if key is None:
                continue  # being written, here or elsewhere
            try:
                gone = await remove_record(store, *ids)
            finally:
                await store._unlock(key)
            if not gone:
                # S3 would not abort it: its parts are still stored, so it still
                # counts (and stays resumable); the next older one goes instead.
                continue
            store._hashers.pop(key, None)
            size = int(old["durable_offset"])
            reason = f"{scope}_uploads" if count > most else f"{scope}_bytes"
            store.log.warning(
                "partial_upload_dropped",
                client_id=ids[0].hex(),
                upload_id=ids[1].hex(),
                bytes=size,
                reason=reason,
            )
            if store._on_drop is not None:
                store._on_drop(reason, size)
            count, total = count - 1, total - size


async def _remove_orphans(store: SharedUnfinishedUploads, ttl: float) -> int:
    """Part and tail objects of uploads without a record, idle ``ttl`` seconds: what a
    stale holder wrote after its upload was finished elsewhere. Every page of the
    listing, each sweep: keys come in lexical order, so a sweep that stopped early
    would meet the same recorded or young objects first every time and never reach
    an orphan behind them. A listing that fails leaves the rest to the next sweep."""
    cutoff = time.time() - ttl
    listing: dict[str, Any] = {"Prefix": store.staging, "MaxKeys": ORPHAN_PAGE}
    removed = 0
    while True:
        try:
            page = await store.client.call("list_objects_v2", **listing)
        except StorageError:
            return removed
        removed += await _remove_unrecorded(store, page.get("Contents", []), cutoff)
        if not page.get("IsTruncated"):
            return removed
        listing["ContinuationToken"] = page["NextContinuationToken"]


async def _remove_unrecorded(
    store: SharedUnfinishedUploads, items: list[dict[str, Any]], cutoff: float
) -> int:
    """Of one page of staged objects, delete those modified before ``cutoff`` whose
    upload has no record: one query for the page's uploads."""
    assert store._pool is not None
    old: dict[str, tuple[bytes, bytes]] = {}
    for item in items:
        if item["LastModified"].timestamp() >= cutoff:
            continue
        client_hex, _, rest = item["Key"][len(store.staging) :].partition("/")
        try:
            old[item["Key"]] = (
                bytes.fromhex(client_hex),
                bytes.fromhex(rest.partition("/")[0]),
            )
        except ValueError:
            continue  # no upload's key
    if not old:
        return 0
    uploads = set(old.values())
    rows = await store._pool.fetch(  # by pairs: a record spares its own upload only
        "SELECT client_id, upload_id FROM uploads_v4 WHERE (client_id, upload_id)"
        " IN (SELECT * FROM unnest($1::bytea[], $2::bytea[]))",
        [client_id for client_id, _ in uploads],
        [upload_id for _, upload_id in uploads],
    )
    recorded = {(row["client_id"], row["upload_id"]) for row in rows}
    removed = 0
    for key, ids in old.items():
        if ids not in recorded:
            with contextlib.suppress(StorageError):
                await store.client.call("delete_object", Key=key)
                removed += 1
    return removed


async def remove_record(store: SharedUnfinishedUploads, client_id: bytes, upload_id: bytes) -> bool:
    """Abort an upload's multipart upload, delete its part objects and its record
    (the lock is held): True once all is gone. The record is the only note of the
    multipart upload's id, so it goes last, after S3 confirmed the rest: a failure
    (logged) leaves it to the next sweep or quota turn, which tries again."""
    assert store._pool is not None
    ids = (client_id, upload_id)
    row = await store._pool.fetchrow(
        "SELECT object_key, store_upload_id FROM uploads_v4"
        " WHERE client_id = $1 AND upload_id = $2",
        *ids,
    )
    if row is not None and row["object_key"]:
        if not await abort(store, row["object_key"], row["store_upload_id"]):
            return False
        # Aborted: no resume can continue it now, nor need the retry abort it again.
        await store._pool.execute(
            "UPDATE uploads_v4 SET object_key = NULL WHERE client_id = $1 AND upload_id = $2",
            *ids,
        )
    if not await delete_staging(store, store._staging_prefix(*ids)):
        return False
    await store._pool.execute(
        "DELETE FROM uploads_v4 WHERE client_id = $1 AND upload_id = $2", *ids
    )
    return True


async def abort(store: SharedUnfinishedUploads, key: str, s3_upload_id: str) -> bool:
    """Abort a multipart upload (its parts cost storage until then): True once S3
    holds none of it. Anything else is logged and False: the caller keeps the
    upload's id for another try."""
    try:
        await store.client.call("abort_multipart_upload", Key=key, UploadId=s3_upload_id)
    except S3Failed as exc:
        if exc.code == "NoSuchUpload":  # aborted already (a retry, a lifecycle rule)
            return True
        store.log.warning("s3_abort_failed", key=key, error=str(exc))
        # A bucket removed under us took its multipart uploads with it.
        return exc.code == "NoSuchBucket"
    return True


async def delete_staging(store: SharedUnfinishedUploads, prefix: str) -> bool:
    """Every object under ``prefix`` (a stale holder's too), page by page: an upload
    of more than 1,000 parts has more than S3 lists at once. True once none is left
    (or the bucket itself is gone); a failure is logged."""
    listing: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
    try:
        while True:
            page = await store.client.call("list_objects_v2", **listing)
            for item in page.get("Contents", []):
                await store.client.call("delete_object", Key=item["Key"])
            if not page.get("IsTruncated"):
                return True
            listing["ContinuationToken"] = page["NextContinuationToken"]
    except StorageError as exc:
        store.log.warning("s3_staging_not_deleted", prefix=prefix, error=str(exc))
        return isinstance(exc, S3Failed) and exc.code == "NoSuchBucket"
