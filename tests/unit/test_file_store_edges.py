"""Version 3's file store at its edges (server/eft_server/storage.py), through its
interface: the refusals' messages, directories made durably even when another process
makes one meanwhile, and the fsync of each directory a file's name goes into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eft_protocol.v4.records import CHUNK
from eft_server.storage import FileStore, StorageError, make_directories

CLIENT = bytes(range(16))


def test_the_store_keeps_its_data_directory(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert (store.data_dir, store.files_dir, store.tmp_dir) == (
        tmp_path,
        tmp_path / "files",
        tmp_path / "tmp",
    )


def test_a_name_that_leaves_its_directory_is_refused_by_name(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for name in ("..", "", ".", "a/../../b"):
        with pytest.raises(StorageError, match=r"^refusing to store .* outside its directory$"):
            store.final_path(CLIENT, name)
    with pytest.raises(StorageError, match=r"^refusing to store '\.\.' outside its directory$"):
        store.final_path(CLIENT, "..")


def test_an_upload_that_cannot_get_a_temporary_file_says_so(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.tmp_dir.rmdir()  # gone from under the server
    with pytest.raises(
        StorageError, match=r"^cannot create a temporary file: \[Errno 2\] No such file"
    ):
        store.open_upload(CLIENT, "a.txt")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_the_disk_refused_says_so(tmp_path: Path) -> None:
    upload = FileStore(tmp_path).open_upload(CLIENT, "a.txt")
    real = upload._handle
    assert real is not None
    upload._handle = open("/dev/full", "wb")  # noqa: SIM115 - closed by discard
    with pytest.raises(StorageError, match=r"^cannot write: \[Errno 28\] No space left"):
        upload.write(bytes(CHUNK))  # more than the buffer: written at once
    upload.discard()
    real.close()


def test_directories_made_meanwhile_by_another_are_passed_over_not_stopped_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = tmp_path / "a"
    real_mkdir = Path.mkdir

    def mkdir(path: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        real_mkdir(path, mode, parents, exist_ok)
        if path == raced:  # as if another upload's commit had made it first
            raise FileExistsError(str(path))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    make_directories(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()


def test_each_directory_made_is_synced_into_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    make_directories(tmp_path / "a" / "b")
    assert synced == [tmp_path.stat().st_ino, (tmp_path / "a").stat().st_ino]
    synced.clear()
    store = FileStore(tmp_path / "data")
    upload = store.open_upload(CLIENT, "a.txt")
    upload.write(b"hello")
    final = upload.commit()
    client_dir = final.parent
    # the file's data, the client's new directory into files/, the name into the client's
    assert synced[-3:] == [
        os.stat(final).st_ino,
        store.files_dir.stat().st_ino,
        client_dir.stat().st_ino,
    ]
