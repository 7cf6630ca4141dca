"""Version 4's unfinished uploads shared by every replica: S3 holds the bytes,
PostgreSQL holds the record and who writes it (``--store s3://…`` with ``--registry
postgresql://…``; docs/SCALING.md, "Resume on any replica").

Per upload, keyed by (client id, upload id):

- ``uploads_v4``: the file's name, size and key, the multipart upload id, the part size,
  the acknowledged offset (``durable_offset``: whole parts plus the tail), the tail's
  object, and ``generation``, the fencing token (below);
- each whole part twice in S3: as an object of its own under ``v4/unfinished/…``
  (readable: a replica that resumes reads the prefix back to rebuild the BLAKE3 state,
  which cannot be saved, as the local store reads its file back; the replica that
  suspended it keeps the state in memory and reads only the tail), and copied server-side
  (``UploadPartCopy``) into the multipart upload; ``upload_parts_v4`` holds both names
  and the ETag. The part objects are deleted once the file is complete;
- the tail (less than a part, which S3 takes only as the last) as a small object, put
  when the connection breaks. A replica killed outright keeps no tail: its upload
  resumes at its last whole part, which is all the record ever claimed.

Nothing is claimed before it is durable: ``durable_offset`` moves only after the part
object, its copy and the PostgreSQL row are written, and a resume offers the client
only ``durable_offset``.

One writer at a time: the writing replica holds a session advisory lock on the upload's
key, on one connection of its own (``_LockConnection``). It vanishes when the replica's
session ends (killed: at once). A replica that wants a held upload asks the holder to
let go (NOTIFY ``eft_uploads``); a live holder cuts the connection writing it (the
client has gone to another replica, this one has not noticed yet), suspends it and
unlocks. A holder that does not answer within ``let_go_timeout`` (stopped, hung) has its
lock connection terminated (``pg_terminate_backend``), which frees its locks.

Fencing: whoever takes an upload bumps ``generation``; every record write of a holder is
conditioned on its generation, and the taker aborts the previous multipart upload and
starts its own (the parts copied again, server-side). A stale holder that wakes up can
therefore neither move the record nor add a part to the upload that will be completed.

This module holds the store (locks, let-go, records); s3_shared_resume.py opens an
upload (resumed from its records or started), s3_shared_upload.py writes one, and
s3_shared_sweep.py removes those nobody will finish (the expiry sweep, the limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from eft_protocol.v4.file_digest import FileHasher

from . import s3_shared_sweep as sweep
from .partial_uploads import OnDrop, PartialQuota, UploadBusy
from .pg_connect import PgSettings
from .s3_shared_resume import resume_or_start
from .s3_shared_upload import SharedUpload, UploadTaken
from .s3_store import S3Client
from .storage import StorageError

__all__ = ["SharedUnfinishedUploads", "SharedUpload", "UploadTaken", "lock_key"]

_UNBOUNDED_ROOM = 2**63 - 1
CHANNEL = "eft_uploads"
#: Seconds a holder is given to let go before its lock connection is terminated.
LET_GO_TIMEOUT = 3.0
#: Seconds a connection to PostgreSQL or one statement may take: a hung database fails
#: an open or a sweep as a storage error instead of holding it for ever.
PG_TIMEOUT = 10.0
#: Pooled connections per replica at most (plus its lock connection): the cluster's
#: ``max_connections`` must hold replicas x (POOL_SIZE + 1).
POOL_SIZE = 4


def lock_key(client_id: bytes, upload_id: bytes) -> int:
    """The upload's advisory lock key (a signed bigint)."""
    digest = hashlib.blake2b(b"eft-upload" + client_id + upload_id, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SharedUnfinishedUploads:
    local_files_dir: Path | None = None  # the files are in S3: nothing to reconcile

    def __init__(
        self,
        client: S3Client,
        pg: PgSettings,
        quota: PartialQuota | None = None,
        *,
        on_drop: OnDrop | None = None,
        let_go_timeout: float = LET_GO_TIMEOUT,
    ) -> None:
        self.client = client
        self.pg = pg
        self.quota = quota or PartialQuota()
        self._on_drop = on_drop
        self.let_go_timeout = let_go_timeout
        self.prefix = client.location.key("v4", "files") + "/"
        self.staging = client.location.key("v4", "unfinished") + "/"
        self._pool: asyncpg.Pool | None = None
        self._locks: asyncpg.Connection | None = None
        self._locks_busy = asyncio.Lock()  # one statement at a time on the lock connection
        self._held: dict[int, SharedUpload] = {}
        self._opening: set[int] = set()
        self._released: dict[int, asyncio.Event] = {}
        #: Suspended here: (generation, offset, digest state), newest last, bounded.
        self._hashers: OrderedDict[int, tuple[int, int, FileHasher]] = OrderedDict()
        self.log: Any = structlog.get_logger("eft.s3")

    # --- PostgreSQL -----------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        pg = self.pg
        return await asyncpg.connect(
            host=pg.host,
            port=pg.port,
            database=pg.database,
            user=pg.user,
            password=pg.password,
            timeout=PG_TIMEOUT,
            command_timeout=PG_TIMEOUT,
        )

    async def connect(self) -> None:
        """Before serving: the pool and the lock connection (PostgreSQL is migrated)."""
        pg = self.pg
        self._pool = await asyncpg.create_pool(
            host=pg.host,
            port=pg.port,
            database=pg.database,
            user=pg.user,
            password=pg.password,
            min_size=0,
            max_size=POOL_SIZE,
            timeout=PG_TIMEOUT,
            command_timeout=PG_TIMEOUT,
        )
        await self._lock_connection()

    async def close(self) -> None:
        if self._locks is not None:
            with contextlib.suppress(Exception):
                await self._locks.close(timeout=2)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 2)

    async def _lock_connection(self) -> asyncpg.Connection:
        """The connection holding this replica's upload locks (a new one if it was lost:
        the locks it held went with it, and their uploads were cut)."""
        if self._locks is not None and not self._locks.is_closed():
            return self._locks
        locks = await self._connect()
        await locks.add_listener(CHANNEL, self._notified)
        locks.add_termination_listener(self._locks_lost)
        self._locks = locks
        return locks

    def _locks_lost(self, connection: object) -> None:
        """Our session ended (PostgreSQL restarted, or a replica that found us hung
        terminated it): every lock is gone, so is the right to write these uploads."""
        if connection is not self._locks:
            return
        self._locks = None
        held, self._held = self._held, {}
        for upload in held.values():
            upload.fenced = True
            upload.cut()
        if held:
            self.log.warning("s3_upload_locks_lost", uploads=len(held))

    def _notified(self, connection: object, pid: int, channel: str, payload: object) -> None:
        verb, _, key_text = str(payload).partition(" ")
        try:
            key = int(key_text)
        except ValueError:
            return
        if verb == "let-go" and key in self._held:
            self.log.info("s3_upload_let_go", key=key)
            self._held[key].cut()
        elif verb == "released" and key in self._released:
            self._released[key].set()

    async def _try_lock(self, key: int) -> bool:
        async with self._locks_busy:
            locks = await self._lock_connection()
            return bool(await locks.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def _unlock(self, key: int) -> None:
        self._held.pop(key, None)
        if key in self._released:  # a connection of ours waits for it
            self._released[key].set()
        try:
            async with self._locks_busy:
                if self._locks is not None and not self._locks.is_closed():
                    await self._locks.fetchval("SELECT pg_advisory_unlock($1)", key)
            assert self._pool is not None
            await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, f"released {key}")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.log.warning("s3_upload_unlock_failed", key=key, error=str(exc))

    async def _acquire(self, key: int) -> None:
        """The upload's lock, taken from a holder that does not let go if need be."""
        if await self._try_lock(key):
            return
        assert self._pool is not None
        released = self._released.setdefault(key, asyncio.Event())
        released.clear()
        try:
            await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, f"let-go {key}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), self.let_go_timeout)
            if await self._try_lock(key):
                return
            # No answer: the holder is stopped or hung. End its session; its locks go.
            holders = await self._pool.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = (($1::bigint >> 32) & 4294967295)::oid"
                " AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1"
                # advisory locks are per database: another one's holder is not ours
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                key,
            )
            for row in holders:
                self.log.warning("s3_upload_holder_terminated", key=key, pid=row["pid"])
                await self._pool.fetchval("SELECT pg_terminate_backend($1, 5000)", row["pid"])
            if await self._try_lock(key):
                return
        finally:
            self._released.pop(key, None)
        raise UploadBusy("this upload is still held by another replica")

    async def _lock_idle(self, client_id: bytes, upload_id: bytes) -> int | None:
        """The lock of an upload nobody writes, here or elsewhere (for the sweep and
        the limits to remove it), or None."""
        key = lock_key(client_id, upload_id)
        if key in self._held or key in self._opening or not await self._try_lock(key):
            return None
        return key

    # --- the seam ---------------------------------------------------------------------

    async def open(
        self, client_id: bytes, upload_id: bytes, name: str, size: int, digest_algorithm: int
    ) -> SharedUpload:
        key = lock_key(client_id, upload_id)
        if key in self._opening:
            raise UploadBusy("this upload is still open on another connection")
        if key in self._held:  # here, on a connection whose peer is gone: cut it
            released = self._released.setdefault(key, asyncio.Event())
            released.clear()  # set by an earlier holder's unlock: not this one's notice
            try:
                self._held[key].cut()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), self.let_go_timeout)
            finally:
                self._released.pop(key, None)  # as _acquire: nobody waits on it now
            # and another open that waited with this one may have been first
            if key in self._held or key in self._opening:
                raise UploadBusy("this upload is still open on another connection")
        self._opening.add(key)
        try:
            try:
                await self._acquire(key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StorageError(f"the upload records are unreachable: {exc}") from exc
            try:
                upload = await resume_or_start(
                    self,
                    key,
                    client_id,
                    upload_id,
                    name=name,
                    size=size,
                    digest_algorithm=digest_algorithm,
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await self._unlock(key)
                raise StorageError(f"the upload records are unreachable: {exc}") from exc
            except BaseException:
                await self._unlock(key)
                raise
        finally:
            self._opening.discard(key)
        self._held[key] = upload
        return upload

    async def measure(
        self, upload: object, client_id: bytes, name: str, keep_free: int
    ) -> tuple[int, str | None]:
        return _UNBOUNDED_ROOM, None

    def keep_hasher(self, key: int, generation: int, offset: int, hasher: FileHasher) -> None:
        """A few hundred bytes per suspended upload, at most ``quota.uploads`` of them
        (the oldest go first: their resume reads the prefix back instead)."""
        self._hashers[key] = (generation, offset, hasher)
        self._hashers.move_to_end(key)
        while len(self._hashers) > self.quota.uploads:
            self._hashers.popitem(last=False)

    def usage(self) -> tuple[int, int]:
        uploads = list(self._held.values())
        return len(uploads), sum(upload.received for upload in uploads)

    async def remove_leftovers(self) -> int:
        """Nothing at start-up: the records are the cluster's, and another replica may be
        writing them (the expiry sweep takes the abandoned ones)."""
        return 0

    async def remove_expired(self, ttl: float) -> int:
        """The expiry sweep (s3_shared_sweep.py)."""
        return await sweep.remove_expired(self, ttl)

    async def enforce_quota(self, client_id: bytes, keep: bytes) -> None:
        """The limits' drops (s3_shared_sweep.py)."""
        await sweep.enforce_quota(self, client_id, keep)

    def _staging_prefix(self, client_id: bytes, upload_id: bytes) -> str:
        return self.staging + f"{client_id.hex()}/{upload_id.hex()}/"
