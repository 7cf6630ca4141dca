"""Memory per upload is one part buffer: counted (``PartBuffer.live``), not timed.

Three uploads of 12 MiB go into the real S3 at once, interleaved 1 MiB at a time as
connections would write them: however much has passed through, at most one buffer per
upload exists, each at most one part long, and none is left once they are done."""

from __future__ import annotations

import asyncio

from eft_server.s3_settings import S3Location, S3Settings
from eft_server.s3_store import (
    MAX_PARTS,
    MIN_PART_SIZE,
    MultipartWriter,
    PartBuffer,
    S3Client,
    part_size_for,
)
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedFS

MiB = 1 << 20


def test_each_upload_holds_one_part_buffer_at_most(seaweedfs: SeaweedFS, bucket: str) -> None:
    settings = S3Settings(
        S3Location(bucket, "memory"), seaweedfs.endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY
    )

    async def upload_three() -> list[str]:
        client = S3Client(settings)
        await client.open()
        try:
            assert PartBuffer.live == 0
            writers = [
                await MultipartWriter.start(client, f"memory/{n}.bin", MIN_PART_SIZE)
                for n in range(3)
            ]
            most = 0
            for index in range(12):
                for number, writer in enumerate(writers):
                    await writer.write(bytes([number]) * MiB)
                    most = max(most, PartBuffer.live)
                    assert writer.buffer is not None
                    assert writer.buffer.capacity == MIN_PART_SIZE
                    assert writer.buffered < MIN_PART_SIZE
                    assert writer.sent + writer.buffered == (index + 1) * MiB
            assert most == 3  # one each, for 36 MiB through them
            return [await writer.complete() for writer in writers]
        finally:
            await client.close()

    locations = asyncio.run(upload_three())
    assert PartBuffer.live == 0
    for number, location in enumerate(locations):
        key = location.removeprefix(f"s3://{bucket}/")
        assert seaweedfs.object_bytes(bucket, key) == bytes([number]) * (12 * MiB)


def test_parts_follow_the_declared_size_within_s3s_limits() -> None:
    assert part_size_for(0) == MIN_PART_SIZE
    assert part_size_for(4 << 30) == MIN_PART_SIZE  # version 3's largest: 820 parts
    one_tib = 1 << 40
    size = part_size_for(one_tib)
    assert size % MiB == 0 and one_tib / size <= MAX_PARTS
    assert size - MiB < one_tib / MAX_PARTS  # the smallest whole MiB that fits
