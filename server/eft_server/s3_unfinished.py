"""Version 4's resumable uploads in S3: one multipart upload per unfinished upload,
continued after a broken connection, completed only after the digest matched.

What is kept where, per upload (``<data>/v4/partial-s3/<client id hex>/<upload id>``):

- ``.json``: name, size, object key, S3 upload id and part size, written before the
  first part is sent, so that a crash leaves a record of what to abort;
- the parts in S3 itself: a resume asks ``ListParts`` (pages of 1,000) what S3 holds;
- ``.tail``: the bytes received after the last whole part (less than a part, which S3
  cannot take as a part that is not the last), written and synced when the connection
  breaks, so a resume never loses a chunk the client was told was kept.

The digest (BLAKE3 of the whole file, compared by the client before the commit) is
rebuilt on the local store by reading the kept prefix back; S3 cannot read the parts of
an unfinished upload, and the hasher's state cannot be saved. So the hasher of a broken
upload is kept in this process's memory (a few hundred bytes), and a resume continues
the same multipart upload only on the server that received its start. After this
server restarts, its unfinished uploads are aborted and their clients start again at
chunk 1 (as after a quota drop, docs/PROTOCOL-v4.md section 8). docs/STORAGE-S3.md
says what resume on another replica needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from eft_protocol.v4.file_digest import FileHasher, hasher_for
from eft_protocol.v4.records import CHUNK, chunk_count

from .partial_uploads import OnDrop, PartialQuota, UploadBusy
from .s3_store import MultipartWriter, S3Client, S3Failed, part_size_for
from .storage import FILE_MODE, StorageError, _fsync_directory, make_directories

#: What ``measure`` reports: more than any file (the core compares it with the bytes left).
_UNBOUNDED_ROOM = 2**63 - 1


@dataclass
class _Suspended:
    """A broken upload this process can resume."""

    hasher: FileHasher
    received: int  # bytes in S3's parts and the tail
    used: float  # when it was suspended


class S3UnfinishedUploads:
    local_files_dir: Path | None = None  # the files are in S3: nothing to reconcile

    def __init__(
        self,
        client: S3Client,
        data_dir: Path,
        quota: PartialQuota | None = None,
        on_drop: OnDrop | None = None,
    ) -> None:
        self.client = client
        self.state_dir = data_dir / "v4" / "partial-s3"
        make_directories(self.state_dir)
        self.prefix = client.location.key("v4", "files") + "/"
        self.quota = quota or PartialQuota()
        self._on_drop = on_drop
        #: By "<client hex>/<upload id hex>": uploads a connection holds, and broken ones.
        self._open: dict[str, S3UnfinishedUpload | None] = {}  # None: still opening
        self._suspended: dict[str, _Suspended] = {}
        #: Discarded uploads S3 would not abort: their sidecar stays, for the sweep.
        self._unaborted: set[str] = set()
        self.log: Any = structlog.get_logger("eft.s3")

    def _base(self, ident: str) -> Path:
        return self.state_dir / ident

    async def open(
        self, client_id: bytes, upload_id: bytes, name: str, size: int, digest_algorithm: int
    ) -> S3UnfinishedUpload:
        ident = f"{client_id.hex()}/{upload_id.hex()}"
        if ident in self._open:
            raise UploadBusy("this upload is still open on another connection")
        self._open[ident] = None  # reserved while it opens
        try:
            upload = await self._resume_or_start(ident, client_id, name, size, digest_algorithm)
        except BaseException:
            del self._open[ident]
            raise
        self._open[ident] = upload
        await self._enforce(client_id.hex())
        return upload

    async def measure(
        self, upload: object, client_id: bytes, name: str, keep_free: int
    ) -> tuple[int, str | None]:
        """An S3 bucket reports no free space and a key never collides with a folder:
        nothing to refuse up front (S3 itself refuses what it cannot hold)."""
        return _UNBOUNDED_ROOM, None

    async def _resume_or_start(
        self, ident: str, client_id: bytes, name: str, size: int, digest_algorithm: int
    ) -> S3UnfinishedUpload:
        base = self._base(ident)
        state = await asyncio.to_thread(_read_state, base)
        kept = self._suspended.pop(ident, None)
        if (
            state is not None
            and kept is not None
            # The kept hasher computes one algorithm: another one means starting again.
            and (state["name"], state["size"], state.get("digest_algorithm", 1))
            == (name, size, digest_algorithm)
        ):
            try:
                resumed = await self._resume(ident, state, kept)
            except StorageError:  # S3 away for now: keep the upload for a later try
                self._suspended[ident] = kept
                raise
            if resumed is not None:
                return resumed
        # Not resumable: its parts are of no use to anyone. Its sidecar is the only
        # note of them, so a refused abort keeps it and fails this open (try again).
        if state is not None and not await self._forget_upload(ident, state):
            if kept is not None and ident not in self._suspended:
                self._suspended[ident] = kept  # still stored: still counted, swept
            raise StorageError("the upload's earlier parts could not be removed from S3")
        key = self.prefix + f"{client_id.hex()}/{name}"
        writer = await MultipartWriter.start(self.client, key, part_size_for(size))
        self.log.info("s3_upload_started", upload=ident, s3_upload_id=writer.upload_id)
        state = {
            "name": name,
            "size": size,
            "key": key,
            "upload_id": writer.upload_id,
            "part_size": writer.part_size,
            "digest_algorithm": digest_algorithm,
        }
        try:
            await asyncio.to_thread(_write_durably, base.with_suffix(".json"), json.dumps(state))
        except OSError as exc:
            await writer.abort()
            raise StorageError(f"cannot record the upload: {exc}") from exc
        hasher = hasher_for(digest_algorithm)
        return S3UnfinishedUpload(self, ident, writer, hasher, durable_chunks=0, size=size)

    async def _resume(
        self, ident: str, state: dict[str, Any], kept: _Suspended
    ) -> S3UnfinishedUpload | None:
        """The same multipart upload, if S3 and the tail hold exactly what was kept."""
        part_size = int(state["part_size"])
        try:
            parts = await self.client.parts(state["key"], state["upload_id"])
        except S3Failed as exc:
            if exc.code != "NoSuchUpload":
                raise
            # Aborted behind our back (a lifecycle rule, an operator): start again.
            self.log.warning("s3_resume_impossible", upload=ident, error=str(exc))
            return None
        numbers = [int(part["PartNumber"]) for part in parts]
        if numbers != list(range(1, len(parts) + 1)) or any(
            int(part["Size"]) != part_size for part in parts
        ):
            self.log.warning("s3_resume_impossible", upload=ident, error="parts differ")
            return None
        try:
            tail = await asyncio.to_thread(_read_tail, self._base(ident).with_suffix(".tail"))
        except OSError as exc:
            self.log.warning("s3_resume_impossible", upload=ident, error=str(exc))
            return None
        received = len(parts) * part_size + len(tail)
        # The last chunk is always sent again (only it completes a file).
        if (
            received != kept.received
            or received % CHUNK
            or (received // CHUNK > chunk_count(int(state["size"])) - 1)
        ):
            self.log.warning("s3_resume_impossible", upload=ident, error="kept bytes differ")
            return None
        writer = MultipartWriter(
            self.client,
            state["key"],
            state["upload_id"],
            part_size,
            [{"PartNumber": int(p["PartNumber"]), "ETag": p["ETag"]} for p in parts],
        )
        await writer.write(tail)  # less than a part: stays in the buffer
        self.log.info(
            "s3_upload_resumed",
            upload=ident,
            s3_upload_id=writer.upload_id,
            parts=len(parts),
            tail_bytes=len(tail),
        )
        return S3UnfinishedUpload(
            self, ident, writer, kept.hasher, durable_chunks=received // CHUNK, size=state["size"]
        )

    async def _forget_upload(self, ident: str, state: dict[str, Any]) -> bool:
        """Abort the upload's multipart upload, then remove its sidecar and tail: True
        once done. Refused, they stay (the sidecar names the multipart upload), and
        the sweep tries again (start-up too)."""
        if not await self._abort(state):
            self._unaborted.add(ident)
            return False
        self._unaborted.discard(ident)
        await asyncio.to_thread(_remove_state, self._base(ident))
        return True

    async def _abort(self, state: dict[str, Any]) -> bool:
        """Abort the multipart upload (its parts cost storage until then): True once it
        is gone. A failure is logged, not raised, and the caller keeps what it needs to
        try again; only S3's own "no such upload" means there is nothing left to pay for."""
        try:
            await self.client.call(
                "abort_multipart_upload", Key=state["key"], UploadId=state["upload_id"]
            )
        except S3Failed as exc:
            if exc.code == "NoSuchUpload":
                return True
            self.log.warning("s3_abort_failed", key=state["key"], error=str(exc))
            return False
        return True

    # --- the upload's calls back --------------------------------------------------------

    def suspended(self, ident: str, kept: _Suspended) -> None:
        self._open.pop(ident, None)
        self._suspended[ident] = kept

    def forget(self, ident: str) -> None:
        self._open.pop(ident, None)
        self._suspended.pop(ident, None)

    # --- leftovers and limits -------------------------------------------------------------

    def usage(self) -> tuple[int, int]:
        sizes = [kept.received for kept in self._suspended.values()]
        sizes += [upload.received for upload in self._open.values() if upload is not None]
        return len(sizes), sum(sizes)

    async def remove_leftovers(self) -> int:
        """At start-up: every upload a previous run left (their hashers died with it)."""
        removed = 0
        for sidecar in await asyncio.to_thread(lambda: list(self.state_dir.glob("*/*.json"))):
            state = await asyncio.to_thread(_read_state, sidecar.with_suffix(""))
            if state is None:
                await asyncio.to_thread(_remove_state, sidecar.with_suffix(""))
            elif not await self._forget_upload(f"{sidecar.parent.name}/{sidecar.stem}", state):
                continue  # kept: the sweep and the next start try again
            removed += 1
        return removed

    async def remove_expired(self, ttl: float) -> int:
        """Uploads suspended ``ttl`` seconds ago, and discarded ones S3 would not
        abort before; one refused again stays for the next sweep, the others go."""
        cutoff = time.time() - ttl
        expired = [ident for ident, kept in self._suspended.items() if kept.used < cutoff]
        removed = 0
        for ident in expired:
            removed += await self._drop(ident)
        for ident in sorted(self._unaborted - set(self._open) - set(self._suspended)):
            state = await asyncio.to_thread(_read_state, self._base(ident))
            if state is None:
                self._unaborted.discard(ident)
            elif await self._forget_upload(ident, state):
                removed += 1
        return removed

    async def enforce_quota(self, client: str | None = None, keep: str | None = None) -> None:
        await self._enforce(client, keep)

    async def _enforce(self, client: str | None, keep: str | None = None) -> None:
        """Drop the oldest broken uploads until the limits hold (as partial_uploads.py:
        only idle ones go; the one just suspended is spared)."""
        quota = self.quota
        sizes = {ident: kept.received for ident, kept in self._suspended.items()}
        sizes.update({i: u.received for i, u in self._open.items() if u is not None})
        idle = sorted(
            (kept.used, ident) for ident, kept in self._suspended.items() if ident != keep
        )
        clients = {client} if client is not None else {i.split("/")[0] for i in sizes}
        refused: set[str] = set()  # S3 would not abort: still stored, still counted

        async def drop(ident: str, reason: str) -> bool:
            if ident in refused or ident not in self._suspended:  # resumed meanwhile
                return False
            size = self._suspended[ident].received
            if not await self._drop(ident):
                refused.add(ident)
                return False
            self.log.warning("partial_upload_dropped", upload=ident, bytes=size, reason=reason)
            if self._on_drop is not None:
                self._on_drop(reason, size)
            return True

        for name in clients:
            mine = [i for i in sizes if i.startswith(name + "/")]
            count, total = len(mine), sum(sizes[i] for i in mine)
            for _used, ident in idle:
                if count <= quota.uploads_per_client and total <= quota.bytes_per_client:
                    break
                if ident.startswith(name + "/"):
                    reason = (
                        "client_uploads" if count > quota.uploads_per_client else "client_bytes"
                    )
                    if await drop(ident, reason):
                        count, total = count - 1, total - sizes.pop(ident)
        count, total = len(sizes), sum(sizes.values())
        for _used, ident in idle:
            if count <= quota.uploads and total <= quota.bytes:
                break
            if ident in sizes:
                reason = "server_uploads" if count > quota.uploads else "server_bytes"
                if await drop(ident, reason):
                    count, total = count - 1, total - sizes.pop(ident)

    async def _drop(self, ident: str) -> bool:
        """A suspended upload gone for good: True once S3 aborted it. Refused, it is
        left as it was (resumable, counted), for the next sweep or quota turn."""
        kept = self._suspended.pop(ident, None)
        state = await asyncio.to_thread(_read_state, self._base(ident))
        if state is not None and not await self._abort(state):
            if kept is not None and ident not in self._open:
                self._suspended[ident] = kept
            return False
        await asyncio.to_thread(_remove_state, self._base(ident))
        return True


class S3UnfinishedUpload:
    def __init__(
        self,
        store: S3UnfinishedUploads,
        ident: str,
        writer: MultipartWriter,
        hasher: FileHasher,
        *,
        durable_chunks: int,
        size: int,
    ) -> None:
        self._store = store
        self._ident = ident
        self._writer = writer
        self._hasher = hasher
        self.size = size
        self.durable_chunks = durable_chunks
        self.written_chunks = durable_chunks

    @property
    def received(self) -> int:
        return self._writer.sent + self._writer.buffered

    async def write(self, index: int, data: bytes | memoryview) -> None:
        """Chunks come in order (the session checks); ``index`` starts at 1."""
        assert index == self.written_chunks + 1
        await self._writer.write(data)
        self._hasher.update(data)
        self.written_chunks = index

    async def finish(self) -> bytes:
        return self._hasher.digest()

    async def commit(self, client_id: bytes, name: str) -> str:
        location = await self._writer.complete()
        await asyncio.to_thread(_remove_state, self._store._base(self._ident))
        self._store.forget(self._ident)
        return location

    async def suspend(self) -> None:
        """Keep the tail on disk (synced) and the hasher in memory; release the buffer."""
        writer = self._writer
        if writer.buffer is None:
            return
        tail = writer.buffer.contents() if not writer.buffer.full else None
        received = self.received
        writer.release()
        if tail is None:  # broken in the middle of sending a part: S3 may or may not have it
            await self.discard()
            return
        try:
            path = self._store._base(self._ident).with_suffix(".tail")
            await asyncio.to_thread(_write_durably, path, tail)
        except OSError as exc:
            self._store.log.warning("s3_tail_not_kept", upload=self._ident, error=str(exc))
            await self.discard()
            return
        self._store.suspended(self._ident, _Suspended(self._hasher, received, time.time()))
        await self._store.enforce_quota(self._ident.split("/")[0], keep=self._ident)

    async def discard(self) -> None:
        """Abort, then forget the sidecar; a refused abort keeps it for the sweep."""
        writer = self._writer
        writer.release()
        await self._store._forget_upload(
            self._ident, {"key": writer.key, "upload_id": writer.upload_id}
        )
        self._store.forget(self._ident)


def _read_state(base: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(base.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"name", "size", "key", "upload_id", "part_size"} <= set(
        state
    ):
        return None
    return state


def _read_tail(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _remove_state(base: Path) -> None:
    for suffix in (".json", ".tail", ".json.tmp", ".tail.tmp"):
        with contextlib.suppress(OSError):  # what cannot go now, start-up takes later
            base.with_suffix(suffix).unlink(missing_ok=True)


def _write_durably(path: Path, content: str | bytes) -> None:
    """Temp file, fsync, rename, directory fsync: the old content or the new, whole."""
    make_directories(path.parent)
    data = content.encode() if isinstance(content, str) else content
    temp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_directory(path.parent)
