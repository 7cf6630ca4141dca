"""The expiry sweep's pass over the staged objects (s3_shared_sweep.py,
``_remove_orphans``) on the real PostgreSQL and SeaweedFS: it pages through the whole
listing. S3 lists keys in lexical order, so a sweep that read only the first page would
meet the same recorded and young objects there every time and never reach an orphan
sorted after them. The page is made small (``ORPHAN_PAGE``) so that a dozen objects
span three pages; on main the sweep read one page of 1,000."""

from __future__ import annotations

import asyncio
import types

import pytest

from eft_server import s3_shared_sweep
from eft_server.pg_connect import PgSettings
from tests.s3.shared_support import CLIENT, OTHER, STAGING, connect, replica, staged
from tests.support.seaweedfs import SeaweedFS

PAGE = 5


def _key(client_id: bytes, upload_id: bytes, what: str) -> str:
    """A staged object's key, less the staging prefix."""
    return f"{client_id.hex()}/{upload_id.hex()}/{what}"


async def _record(pg: PgSettings, client_id: bytes, upload_id: bytes, updated_at: float) -> None:
    """An upload's record, as little of it as the sweep reads."""
    connection = await connect(pg)
    try:
        await connection.execute(
            "INSERT INTO uploads_v4 (client_id, upload_id, file_name, size, store_upload_id,"
            " updated_at) VALUES ($1, $2, 'f.bin', 100, 'none', $3)",
            client_id,
            upload_id,
            updated_at,
        )
    finally:
        await connection.close()


def _put(seaweedfs: SeaweedFS, bucket: str, keys: list[str]) -> dict[str, float]:
    """Put each object (its key as its body); the S3 times of their modification."""
    s3 = seaweedfs.client()
    for key in keys:
        s3.put_object(Bucket=bucket, Key=STAGING + key, Body=key.encode())
    return {
        key: float(s3.head_object(Bucket=bucket, Key=STAGING + key)["LastModified"].timestamp())
        for key in keys
    }


def test_a_sweep_reaches_orphans_sorted_after_pages_of_recorded_and_young_objects(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 5: a recorded upload's 7 part objects, then 4 young orphans, then two
    old orphans on the third page. One sweep deletes both old ones; the recorded and
    the young are kept, by that sweep and the next. The module's clock is set to the
    young objects' S3 time, so the cutoff falls on them (no margin on the wall clock)."""
    monkeypatch.setattr(s3_shared_sweep, "ORPHAN_PAGE", PAGE)
    recorded = [_key(CLIENT, b"a" * 16, f"g1-p{n}") for n in range(1, 8)]
    young = [_key(CLIENT, b"b" * 16, f"g1-p{n}") for n in range(1, 5)]
    old = [_key(CLIENT, b"c" * 16, "g1-p1"), _key(OTHER, b"d" * 16, "g2-tail1")]
    assert sorted(recorded + young + old) == recorded + young + old  # the listing's order
    modified = _put(seaweedfs, bucket, recorded + old)
    latest = max(modified.values())
    now = _put(seaweedfs, bucket, young)
    while min(now.values()) <= latest:
        # S3 times are whole seconds: put them again until the server's clock has ticked
        now = _put(seaweedfs, bucket, young)
    cutoff = min(now.values())
    monkeypatch.setattr(s3_shared_sweep, "time", types.SimpleNamespace(time=lambda: cutoff))

    async def scenario() -> tuple[int, int]:
        # idle 0 s by the module's clock: the sweep keeps the record itself
        await _record(pg, CLIENT, b"a" * 16, cutoff)
        async with replica(seaweedfs, bucket, pg) as store:
            return await store.remove_expired(0), await store.remove_expired(0)

    assert asyncio.run(scenario()) == (2, 0)
    assert sorted(staged(seaweedfs, bucket)) == recorded + young


def test_a_record_spares_its_own_upload_only(
    seaweedfs: SeaweedFS, bucket: str, pg: PgSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's uploads are looked up in one query, by (client, upload) pairs: a record
    of CLIENT's upload a and one of OTHER's upload b spare those two, not CLIENT's b
    nor OTHER's a (each id is recorded, for another client)."""
    monkeypatch.setattr(s3_shared_sweep, "ORPHAN_PAGE", PAGE)
    kept = [
        _key(CLIENT, b"a" * 16, "g1-p1"),
        _key(CLIENT, b"a" * 16, "g1-p2"),
        _key(OTHER, b"b" * 16, "g1-p1"),
    ]
    gone = [_key(CLIENT, b"b" * 16, "g1-p1"), _key(OTHER, b"a" * 16, "g1-tail0")]
    _put(seaweedfs, bucket, kept + gone)

    async def scenario() -> int:
        for client_id, upload_id in ((CLIENT, b"a" * 16), (OTHER, b"b" * 16)):
            await _record(pg, client_id, upload_id, 2.0**60)  # never idle
        async with replica(seaweedfs, bucket, pg) as store:
            return await store.remove_expired(-3600)  # every object is old

    assert asyncio.run(scenario()) == 2
    assert sorted(staged(seaweedfs, bucket)) == sorted(kept)
