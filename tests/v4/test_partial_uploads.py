"""Version 4's resumable uploads on disk (server/eft_server/partial_uploads.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.records import CHUNK
from eft_server.partial_uploads import PartialStore, UploadBusy
from eft_server.storage import StorageError

CLIENT, UPLOAD = bytes(range(16)), bytes(16)


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, max(len(data), 1), CHUNK)]


@pytest.mark.parametrize("size", [CHUNK * 2 + 5, CHUNK * 2], ids=["ragged", "exact"])
def test_a_complete_upload_kept_at_disconnect_resumes_before_its_last_chunk(
    tmp_path: Path, size: int
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    store = PartialStore(tmp_path)
    upload = store.open(CLIENT, UPLOAD, "f.bin", size)
    for index, chunk in enumerate(_chunks(data), start=1):
        upload.write(index, chunk)
    upload.suspend()  # the connection broke after 1603, before the verdict
    resumed = store.open(CLIENT, UPLOAD, "f.bin", size)
    assert resumed.durable_chunks == len(_chunks(data)) - 1
    resumed.write(len(_chunks(data)), _chunks(data)[-1])
    assert resumed.finish() == file_digest(data).digest()
    final = resumed.commit(store.client_root(CLIENT), "f.bin")
    assert final.read_bytes() == data


def test_a_resume_with_another_name_or_size_starts_afresh(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(CLIENT, UPLOAD, "a.bin", 3 * CHUNK)
    upload.write(1, bytes(CHUNK))
    upload.write(2, bytes(CHUNK))
    upload.suspend()
    assert store.open(CLIENT, UPLOAD, "b.bin", 3 * CHUNK).durable_chunks == 0


def test_an_upload_held_by_another_connection_is_busy(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    store.open(CLIENT, UPLOAD, "a.bin", 10)
    with pytest.raises(UploadBusy):
        store.open(CLIENT, UPLOAD, "a.bin", 10)


def test_an_open_the_disk_refused_leaves_the_upload_free(tmp_path: Path) -> None:
    """ENOSPC while opening (its progress record cannot be written): the old store kept
    the upload marked open, and every later attempt was busy until a restart."""
    store = PartialStore(tmp_path)
    sidecar_temp = store.partial_dir / CLIENT.hex() / f"{UPLOAD.hex()}.json.tmp"
    sidecar_temp.mkdir(parents=True)  # writing the progress record now fails
    with pytest.raises(StorageError) as refused:
        store.open(CLIENT, UPLOAD, "a.bin", 10)
    assert not isinstance(refused.value, UploadBusy)
    sidecar_temp.rmdir()
    upload = store.open(CLIENT, UPLOAD, "a.bin", 10)  # not busy: the disk has room again
    upload.write(1, bytes(10))
    assert upload.finish() == file_digest(bytes(10)).digest()
