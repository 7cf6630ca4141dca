"""What an upload costs in memory, counted by tracemalloc (bytes Python allocated, not
the resident set, not a time): a part on its way to S3 is not copied, and a small file
holds its own bytes, not a whole part.

Before these were bounded, a part went out as a ``bytearray`` that aiohttp copied up to
three times (a slice, the headers joined to it, the transport's buffer), and every
upload allocated its whole part (5 MiB) at the start: 200 sessions of 1 KiB at once held
1 GB in one server."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator

import pytest

from eft_server.s3_settings import S3Location, S3Settings
from eft_server.s3_store import MIN_PART_SIZE, MultipartWriter, PartBuffer, S3Client
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS

MiB = 1 << 20
KiB = 1 << 10


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _settings(seaweedfs: SeaweedFS, bucket: str) -> S3Settings:
    return S3Settings(
        S3Location(bucket, "memory"), seaweedfs.endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY
    )


def test_parts_go_to_s3_without_a_copy(seaweedfs: SeaweedFS, bucket: str, tracing: None) -> None:
    """12 MiB through one upload (two whole parts and a last one): the most Python held
    at once is the part buffer and what botocore reads to sign a part (1 MiB at a time,
    about 7 MiB in all), never a second part (a bytearray body: 15 MiB and more). A first
    upload goes before, untraced: what botocore and aiohttp load once is not counted."""
    chunk = bytes(range(256)) * (MiB // 256)

    async def upload() -> tuple[str, int]:
        client = S3Client(_settings(seaweedfs, bucket))
        await client.open()
        try:
            first = await MultipartWriter.start(client, "memory/first.bin", MIN_PART_SIZE)
            for _ in range(6):
                await first.write(chunk)
            await first.complete()
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            writer = await MultipartWriter.start(client, "memory/big.bin", MIN_PART_SIZE)
            for _ in range(12):
                await writer.write(chunk)
            location = await writer.complete()
            _, peak = tracemalloc.get_traced_memory()
            return location, peak - before
        finally:
            await client.close()

    location, most = asyncio.run(upload())
    assert most < 2 * MIN_PART_SIZE, f"{most / MiB:.1f} MiB held at once"
    key = location.removeprefix(f"s3://{bucket}/")
    assert seaweedfs.object_bytes(bucket, key) == chunk * 12


def test_a_small_file_holds_its_bytes_not_a_part(tracing: None) -> None:
    """Fifty uploads of 1 KiB open at once (the buffers only: nothing is sent before the
    last part) hold about 50 KiB, where a buffer allocated whole held 250 MiB."""
    live = PartBuffer.live
    before, _ = tracemalloc.get_traced_memory()
    writers = [
        MultipartWriter(S3Client.__new__(S3Client), f"k{n}", "upload", MIN_PART_SIZE)
        for n in range(50)
    ]

    async def write_each() -> None:
        for writer in writers:
            await writer.write(b"x" * KiB)

    asyncio.run(write_each())
    held, _ = tracemalloc.get_traced_memory()
    assert held - before < 50 * 16 * KiB, f"{(held - before) / MiB:.1f} MiB held"
    assert PartBuffer.live == live + 50
    for writer in writers:
        assert writer.buffered == KiB
        writer.release()
    assert PartBuffer.live == live
