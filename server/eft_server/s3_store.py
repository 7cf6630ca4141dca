"""The S3 store: each file streams into a multipart upload and appears under its name
only when ``CompleteMultipartUpload`` returns, which is after the client's verdict.

Keys under ``s3://bucket/prefix``, as the local directory's layout::

    prefix/files/<client id hex>/<name>       version 3's committed files
    prefix/v4/files/<client id hex>/<name>    version 4's

Memory: an upload holds one part buffer (``PartBuffer``), at most one part long; when it
is full the connection awaits ``UploadPart`` before it reads more, so a slow S3 slows its
client instead of filling the server. Parts are sized from the file's declared size
(``part_size_for``) within S3's limits: at least 5 MiB except the last, at most 10,000.

Failure: any S3 error is a ``StorageError``, which the connection answers as a storage
failure; the multipart upload is then aborted (best effort: what an abort cannot remove,
S3's own lifecycle rule or the sweep of ``remove_temporary_files`` does). botocore
retries each call (standard mode) so a short outage of S3 costs a pause, not the file.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .s3_settings import S3Location, S3Settings
from .startup import StoreUnusable
from .storage import StorageError

MiB = 1 << 20
#: S3's smallest part (but the last), and a multiple of version 4's 1 MiB chunk, so a
#: part boundary is always a chunk boundary (resume counts whole chunks).
MIN_PART_SIZE = 5 * MiB
#: S3's most parts in one upload.
MAX_PARTS = 10_000
#: ListParts and ListMultipartUploads answer at most this many a page.
LIST_PAGE = 1000


def part_size_for(size: int) -> int:
    """The part size for a file of ``size`` bytes: the smallest whole number of MiB that
    is at least MIN_PART_SIZE and fits the file in MAX_PARTS parts."""
    needed = math.ceil(size / MAX_PARTS / MiB) * MiB
    return max(MIN_PART_SIZE, needed)


class S3Failed(StorageError):
    """S3 refused or could not be reached."""

    @property
    def code(self) -> str | None:
        """S3's error code (``NoSuchUpload``, ...); None when it was not reached."""
        cause = self.__cause__
        if isinstance(cause, ClientError):
            return str(cause.response.get("Error", {}).get("Code"))
        return None

    @property
    def detail(self) -> str:  # for the client: the kind of failure, no bucket or key
        if self.code is not None:
            return f"object storage refused ({self.code})"
        return "object storage unreachable"


class PartBuffer:
    """The one buffer of bytes an upload holds before they become a part.

    It grows with what is written, up to one part: a file of 1 KiB holds 1 KiB, not the
    5 MiB of a whole part (a buffer allocated whole at the start cost every session in
    flight a part, however small its file: 200 sessions of 1 KiB held 1 GB).

    It is an ``io.BytesIO``, and ``body`` hands the stream itself to botocore, so aiohttp
    sends it 64 KiB at a time, awaiting the socket between pieces. A bytes-like body
    is copied whole on its way out (aiohttp slices a bytearray, joins the headers to the
    body, and the transport keeps what the socket did not take at once): up to three
    more part-sized blocks per upload in flight.

    ``live`` counts buffers allocated and not yet released, server-wide: the test of
    bounded memory reads it, and it is the figure to watch if memory grows."""

    live = 0

    def __init__(self, size: int) -> None:
        self.capacity = size
        self._stream = io.BytesIO()
        self.filled = 0
        PartBuffer.live += 1
        self._released = False

    @property
    def full(self) -> bool:
        return self.filled == self.capacity

    def take(self, data: memoryview) -> int:
        """Copy as much of ``data`` as fits; returns how much."""
        count = min(len(data), self.capacity - self.filled)
        stream = self._stream
        stream.seek(self.filled)
        stream.write(data[:count])  # in place once the first part has grown it
        self.filled += count
        return count

    def body(self) -> io.BytesIO:
        """The part to send, read from its start (the buffer itself: no copy). After a
        part shorter than the buffer, only ``release`` is left to call."""
        stream = self._stream
        if not self.full:
            stream.truncate(self.filled)
        stream.seek(0)
        return stream

    def contents(self) -> bytes:
        """A copy of the bytes held (the tail kept on disk: less than a part)."""
        with self._stream.getbuffer() as view:
            return bytes(view[: self.filled])

    def reset(self) -> None:
        """Empty, for the next part (the last one sent)."""
        self.filled = 0

    def release(self) -> None:
        if not self._released:
            self._released = True
            PartBuffer.live -= 1
            self._stream = io.BytesIO()
            self.capacity = self.filled = 0


class S3Client:
    """One aiobotocore client for the server, opened and checked at start-up."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.location: S3Location = settings.location
        self.bucket = settings.location.bucket
        self._stack = contextlib.AsyncExitStack()
        self.api: Any = None
        self.log: Any = structlog.get_logger("eft.s3")

    async def open(self) -> None:
        """Connect and prove the store usable: the bucket is there, and these
        credentials may list, start and abort multipart uploads under the prefix. Raises
        ``StoreUnusable`` naming what is wrong."""
        settings = self.settings
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 4, "mode": "standard"},
            # SeaweedFS, MinIO and older S3s know only MD5-era integrity checks.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        self.api = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.endpoint,
                region_name=settings.region,
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=settings.secret_access_key,
                config=config,
            )
        )
        where = settings.endpoint or f"AWS S3 ({settings.region})"
        try:
            # First a listing: it names a missing bucket (the probe below would create
            # it on some S3 servers) and refused credentials by their error codes.
            await self.api.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.location.key(""), MaxUploads=1
            )
            probe = self.location.key(".eft-probe")
            started = await self.api.create_multipart_upload(Bucket=self.bucket, Key=probe)
            await self.api.abort_multipart_upload(
                Bucket=self.bucket, Key=probe, UploadId=started["UploadId"]
            )
        except EndpointConnectionError as exc:
            await self.close()
            raise StoreUnusable(
                f"cannot reach the S3 endpoint {where}: {exc} (check EFT_S3_ENDPOINT)",
                endpoint=where,
            ) from exc
        except ClientError as exc:
            await self.close()
            raise StoreUnusable(
                _client_error_message(exc, self.bucket, where), endpoint=where
            ) from exc
        except BotoCoreError as exc:
            await self.close()
            raise StoreUnusable(f"the S3 store at {where} failed: {exc}", endpoint=where) from exc

    async def close(self) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, **arguments: Any) -> Any:
        """An S3 call whose failure is a ``StorageError`` (after botocore's retries)."""
        try:
            return await getattr(self.api, operation)(Bucket=self.bucket, **arguments)
        except (ClientError, BotoCoreError) as exc:
            raise S3Failed(f"S3 {operation} failed: {exc}") from exc

    async def multipart_uploads(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """Unfinished multipart uploads under ``prefix``, page by page."""
        arguments: dict[str, Any] = {"Prefix": prefix, "MaxUploads": LIST_PAGE}
        while True:
            page = await self.call("list_multipart_uploads", **arguments)
            for upload in page.get("Uploads", []):
                yield upload
            if not page.get("IsTruncated"):
                return
            arguments["KeyMarker"] = page["NextKeyMarker"]
            arguments["UploadIdMarker"] = page["NextUploadIdMarker"]

    async def parts(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        """The parts an unfinished upload holds, in order (ListParts, pages of 1,000)."""
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            page = await self.call(
                "list_parts",
                Key=key,
                UploadId=upload_id,
                MaxParts=LIST_PAGE,
                PartNumberMarker=marker,
            )
            parts += page.get("Parts", [])
            if not page.get("IsTruncated"):
                return sorted(parts, key=lambda part: int(part["PartNumber"]))
            marker = int(page["NextPartNumberMarker"])

    async def abort_older_than(
        self, prefix: str, seconds: float, keep: frozenset[str] = frozenset()
    ) -> int:
        """Abort multipart uploads under ``prefix`` started more than ``seconds`` ago,
        but those in ``keep`` (upload ids this server is still writing: S3 tells when an
        upload started, not when it was last written)."""
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
        stale = [
            upload
            async for upload in self.multipart_uploads(prefix)
            if upload["Initiated"] < cutoff and upload["UploadId"] not in keep
        ]
        for upload in stale:
            with contextlib.suppress(StorageError):  # gone meanwhile: finished or aborted
                await self.call(
                    "abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"]
                )
        return len(stale)


def _client_error_message(error: ClientError, bucket: str, where: str) -> str:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket", "404") or status == 404:
        return f"the bucket {bucket!r} does not exist at {where} (create it first)"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "403"):
        return (
            f"the S3 store at {where} refused the credentials ({code}): check "
            "EFT_S3_ACCESS_KEY_ID and EFT_S3_SECRET_ACCESS_KEY"
        )
    if code == "AccessDenied" or status == 403:
        return (
            f"the credentials may not write multipart uploads in {bucket!r} at {where} "
            f"({code}): the server needs s3:PutObject, s3:AbortMultipartUpload, "
            "s3:ListMultipartUploadParts and s3:ListBucketMultipartUploads"
        )
    return f"the S3 store at {where} refused the check ({code or status}): {error}"


class MultipartWriter:
    """Bytes in order into one multipart upload: a part is sent whenever the buffer is
    full; ``complete`` sends the rest as the last part and makes the object appear."""

    def __init__(
        self,
        client: S3Client,
        key: str,
        upload_id: str,
        part_size: int,
        parts: list[dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.upload_id = upload_id
        self.part_size = part_size
        #: {"PartNumber", "ETag"} of every part sent, in order.
        self.parts: list[dict[str, Any]] = parts or []
        self.buffer: PartBuffer | None = PartBuffer(part_size)

    @classmethod
    async def start(cls, client: S3Client, key: str, part_size: int) -> MultipartWriter:
        started = await client.call("create_multipart_upload", Key=key)
        return cls(client, key, started["UploadId"], part_size)

    @property
    def sent(self) -> int:
        """Bytes in the parts S3 holds."""
        return len(self.parts) * self.part_size

    @property
    def buffered(self) -> int:
        return 0 if self.buffer is None else self.buffer.filled

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        buffer = self.buffer
        assert buffer is not None
        while view:
            view = view[buffer.take(view) :]
            if buffer.full:
                await self._send(buffer.body())
                buffer.reset()

    async def _send(self, body: io.BytesIO) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"more than {MAX_PARTS} parts: the file outgrew its declared size")
        answer = await self.client.call(
            "upload_part", Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> str:
        """Send the last part and complete: durable under the key when this returns."""
        buffer = self.buffer
        assert buffer is not None
        if buffer.filled or not self.parts:  # S3 needs one part, even an empty one
            await self._send(buffer.body())
        buffer.release()
        self.buffer = None
        await self.client.call(
            "complete_multipart_upload",
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        return self.client.location.url(self.key)

    async def abort(self) -> None:
        """Drop the upload and its parts. Best effort: a failed abort is left to the
        sweep (``abort_older_than``) or the bucket's lifecycle rule."""
        self.release()
        try:
            await self.client.call("abort_multipart_upload", Key=self.key, UploadId=self.upload_id)
        except StorageError as exc:
            self.client.log.warning("s3_abort_failed", key=self.key, error=str(exc))

    def release(self) -> None:
        if self.buffer is not None:
            self.buffer.release()
            self.buffer = None


# --- version 3 ---------------------------------------------------------------------------


class S3Upload:
    """One version-3 attempt: a multipart upload completed on the client's 900."""

    def __init__(self, writer: MultipartWriter, active: set[str]) -> None:
        self._writer = writer
        self._active = active  # the store's: uploads in flight, spared by the sweep
        active.add(writer.upload_id)

    async def write(self, data: bytes | memoryview) -> None:
        await self._writer.write(data)

    async def commit(self) -> str:
        try:
            return await self._writer.complete()
        except StorageError:
            await self._writer.abort()  # no half-made file, no parts left to pay for
            raise
        finally:
            self._active.discard(self._writer.upload_id)

    async def discard(self) -> None:
        self._active.discard(self._writer.upload_id)
        await self._writer.abort()


class S3FileStore:
    """Version 3's files in S3. Its 828 packets declare the size only once the attempt
    has begun, so parts are sized for the largest file version 3 accepts (4 GiB:
    5 MiB parts, fewer than 1,000)."""

    local_files_dir: Path | None = None  # the files are in S3: nothing to reconcile

    def __init__(self, client: S3Client, max_file_size: int) -> None:
        self.client = client
        self.part_size = part_size_for(max_file_size)
        self.prefix = client.location.key("files") + "/"
        self._active: set[str] = set()

    async def open_upload(self, client_id: bytes, storage_name: str) -> S3Upload:
        if "/" in storage_name or storage_name in ("", ".", ".."):
            raise StorageError(f"refusing to store {storage_name!r} outside its directory")
        key = self.prefix + f"{client_id.hex()}/{storage_name}"
        writer = await MultipartWriter.start(self.client, key, self.part_size)
        return S3Upload(writer, self._active)

    async def remove_temporary_files(self, older_than: float | None = None) -> int:
        """Abandoned attempts (a crash between BeginFile and the verdict). Only those
        idle ``older_than`` seconds, even at start-up: another server sharing the bucket
        may be writing the recent ones."""
        if older_than is None:
            return 0  # the periodic sweep takes them once they are old enough
        return await self.client.abort_older_than(self.prefix, older_than, frozenset(self._active))

    async def close(self) -> None:
        await self.client.close()
