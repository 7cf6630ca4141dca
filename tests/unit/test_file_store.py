"""The server's file store on a real directory: where files go, with which modes, and
that a commit is all or nothing. (Faults injected into the same calls are in
tests/faults/test_storage_faults.py; power loss in tests/powerloss.)"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from eft_server.storage import (
    FileStore,
    StorageError,
    create_private,
    make_directories,
    secure_data_dir,
)

CLIENT = bytes(range(16))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_committed_upload_is_under_its_clients_directory_with_private_modes(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "data")
    upload = store.open_upload(CLIENT, "report.txt")
    upload.write(b"first part, ")
    upload.write(memoryview(b"second part"))
    assert upload.size == len(b"first part, second part")
    assert upload.temp_path.parent == tmp_path / "data" / "tmp"
    assert upload.temp_path.name.endswith(".part")
    assert not upload.final_path.exists(), "nothing under the final name before the commit"

    final = upload.commit()
    assert final == tmp_path / "data" / "files" / CLIENT.hex() / "report.txt"
    assert final.read_bytes() == b"first part, second part"
    assert not upload.temp_path.exists()
    assert mode(final) == 0o600
    assert mode(final.parent) == 0o700
    assert mode(tmp_path / "data" / "files") == 0o700
    assert mode(tmp_path / "data" / "tmp") == 0o700


def test_a_commit_replaces_the_stored_version_whole(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    first = store.open_upload(CLIENT, "f.bin")
    first.write(b"old content that is longer")
    first.commit()
    second = store.open_upload(CLIENT, "f.bin")
    second.write(b"new")
    assert store.final_path(CLIENT, "f.bin").read_bytes() == b"old content that is longer"
    second.commit()
    assert store.final_path(CLIENT, "f.bin").read_bytes() == b"new"


def test_a_discarded_upload_leaves_nothing_and_the_stored_version_intact(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = store.open_upload(CLIENT, "f.bin")
    kept.write(b"kept")
    kept.commit()
    dropped = store.open_upload(CLIENT, "f.bin")
    dropped.write(b"dropped")
    dropped.discard()
    dropped.discard()  # twice is harmless
    assert not dropped.temp_path.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.final_path(CLIENT, "f.bin").read_bytes() == b"kept"


def test_two_uploads_of_one_name_use_two_temporary_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    a = store.open_upload(CLIENT, "same.bin")
    b = store.open_upload(CLIENT, "same.bin")
    assert a.temp_path != b.temp_path
    a.discard()
    b.discard()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape"])
def test_a_name_that_is_not_a_base_name_is_refused(tmp_path: Path, name: str) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StorageError):
        store.final_path(CLIENT, name)
    with pytest.raises(StorageError):
        store.open_upload(CLIENT, name)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_sweep_removes_all_leftovers_or_only_the_old_ones(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    old = store.open_upload(CLIENT, "old.bin")
    fresh = store.open_upload(CLIENT, "fresh.bin")
    (tmp_path / "tmp" / "unrelated.txt").write_text("not an upload")
    os.utime(old.temp_path, (1_000_000, 1_000_000))  # untouched since 1970
    assert store.remove_temporary_files(older_than=3600) == 1
    assert not old.temp_path.exists() and fresh.temp_path.exists()
    assert store.remove_temporary_files() == 1
    assert not fresh.temp_path.exists()
    assert (tmp_path / "tmp" / "unrelated.txt").exists()
    old.discard()
    fresh.discard()


def test_a_commit_that_fails_discards_and_says_why(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    upload = store.open_upload(CLIENT, "f.bin")
    upload.write(b"data")
    # The client's directory cannot be made: a file stands where it should be.
    (tmp_path / "files" / CLIENT.hex()).write_bytes(b"in the way")
    with pytest.raises(StorageError) as failed:
        upload.commit()
    assert not upload.temp_path.exists()
    assert "f.bin" in str(failed.value)


def test_the_error_detail_names_the_cause_never_a_path() -> None:
    def raised_from(cause: BaseException | None) -> StorageError:
        error = StorageError("/secret/path")
        error.__cause__ = cause
        return error

    full = raised_from(OSError(errno.ENOSPC, "No space left on device", "/secret/path"))
    assert full.detail == f"{os.strerror(errno.ENOSPC)} (ENOSPC)"
    assert raised_from(sqlite3.OperationalError("disk I/O error")).detail == (
        "its registry refused the write"
    )
    assert raised_from(OSError("no errno")).detail == "a storage error"
    assert raised_from(None).detail == "a storage error"


def test_directories_are_made_private_and_an_open_data_dir_is_narrowed(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    make_directories(deep)
    assert deep.is_dir() and mode(deep) == 0o700 and mode(tmp_path / "a") == 0o700
    make_directories(deep)  # already there: nothing changes
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    secure_data_dir(data)
    assert mode(data) == 0o700


def test_create_private_makes_an_empty_0600_file_and_keeps_an_existing_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.db"
    create_private(path)
    assert path.read_bytes() == b"" and mode(path) == 0o600
    path.write_bytes(b"content")
    create_private(path)
    assert path.read_bytes() == b"content"


def test_the_sweep_goes_through_every_leftover_whatever_it_meets_first(tmp_path: Path) -> None:
    """Twenty old uploads among twenty fresh ones and a leftover that vanishes while the
    sweep looks at it (a dangling link: its ``stat`` fails as a deleted file's would).
    The directory's order is arbitrary, so a sweep that stopped at the first file it
    skips would, all but surely, leave old uploads behind."""
    store = FileStore(tmp_path)
    old = [store.open_upload(CLIENT, f"old{i}.bin") for i in range(20)]
    fresh = [store.open_upload(CLIENT, f"new{i}.bin") for i in range(20)]
    for upload in old:
        os.utime(upload.temp_path, (1_000_000, 1_000_000))
    (tmp_path / "tmp" / "vanished.part").symlink_to(tmp_path / "nowhere")
    assert store.remove_temporary_files(older_than=3600) == 20
    assert not any(upload.temp_path.exists() for upload in old)
    assert all(upload.temp_path.exists() for upload in fresh)
    for upload in old + fresh:
        upload.discard()
