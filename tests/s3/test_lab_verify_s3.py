"""The lab's byte-for-byte check against S3 (eft_lab.verify.S3Files, what
``eft-lab --servers N`` verifies its replicas' shared store with), on the session's
SeaweedFS: the same manifest cases as on a local disk (tests/lab), each object
downloaded in chunks, and only committed files counted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from eft_lab import verify
from eft_lab.verify import S3Files, count_stored_files, verify_manifests, where_files_live
from tests.support.seaweedfs import SeaweedFS

CLIENT_ID = "cd" * 16


def _record(name: str, data: bytes, **extra: object) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    return {"client_id": CLIENT_ID, "file": name, "size": len(data), "sha256": digest, **extra}


def test_files_in_s3_checked_and_counted(
    tmp_path: Path, seaweedfs: SeaweedFS, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "CHUNK", 7)  # several chunks per object
    client = seaweedfs.client()
    objects = {
        f"lab/files/{CLIENT_ID}/a.bin": b"version 3's file, longer than a chunk",
        f"lab/v4/files/{CLIENT_ID}/b.bin": b"version 4's",
        f"lab/files/{CLIENT_ID}/changed.bin": b"not what was sent",
        f"lab/v4/unfinished/{CLIENT_ID}/c.bin": b"an unfinished upload's tail",
        f"other/files/{CLIENT_ID}/d.bin": b"another prefix's",
    }
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    alice = tmp_path / "alice"
    alice.mkdir()
    records = [
        _record("a.bin", b"an earlier upload of that name: superseded"),
        _record("a.bin", objects[f"lab/files/{CLIENT_ID}/a.bin"]),
        _record("b.bin", objects[f"lab/v4/files/{CLIENT_ID}/b.bin"], protocol=4),
        _record("c.bin", b"an unfinished upload's tail", protocol=4),
        _record("changed.bin", b"what was sent"),
    ]
    (alice / "verified.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    store = S3Files(client, bucket, "lab")
    result = verify_manifests([alice], store)
    assert result.checked == 4
    assert result.bytes == len(objects[f"lab/files/{CLIENT_ID}/a.bin"]) + len(b"version 4's")
    assert result.problems == [
        "alice: c.bin verified but not on the server",
        "alice: changed.bin differs on the server",
    ]
    assert count_stored_files(store) == 3  # not the unfinished one, nor another prefix's
    assert where_files_live(store) == f"s3://{bucket}/lab"
    assert where_files_live(tmp_path) == str(tmp_path)
