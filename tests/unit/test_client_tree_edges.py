"""``client_tree``'s edges: each refusal's message (what the client's 1603 refusal and
the log show), the folder shown at the depth where the way is blocked, the syncs that
make each new folder and each stored name durable, a folder made by a concurrent upload
between our two calls, and every descriptor closed exactly once."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_server import client_tree
from eft_server.client_tree import NameInTheWay
from eft_server.storage import StorageError


def _source(tmp_path: Path, label: str = "upload", data: bytes = b"data") -> Path:
    source = tmp_path / f"{label}.part"
    source.write_bytes(data)
    return source


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the descriptors synced from now on."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def _failing(error: int) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(error, os.strerror(error))

    return fail


# --- in_the_way: looks only, says what blocks the name and where ---------------------


def test_nothing_in_the_way_when_the_path_is_missing_or_its_folders_are_folders(
    tmp_path: Path,
) -> None:
    root = tmp_path / "client"
    assert client_tree.in_the_way(root, "a/b/c.txt") is None  # not even the root yet
    (root / "a" / "b").mkdir(parents=True)
    assert client_tree.in_the_way(root, "a/b/c.txt") is None
    (root / "a" / "b" / "c.txt").write_bytes(b"old")  # a file replaced by a new version
    assert client_tree.in_the_way(root, "a/b/c.txt") is None


def test_a_file_where_a_folder_should_be_is_named_at_its_depth(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "a").mkdir(parents=True)
    (root / "a" / "b").write_bytes(b"")
    assert (
        client_tree.in_the_way(root, "a/b/c/d.txt") == "a/b is a file on the server, not a folder"
    )
    assert client_tree.in_the_way(root, "a/b") is None  # the file itself: replaced


def test_a_folder_where_the_file_should_be_is_named_whole(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "a" / "b").mkdir(parents=True)
    assert client_tree.in_the_way(root, "a/b") == "a/b is a folder on the server"
    assert client_tree.in_the_way(root, "a") == "a is a folder on the server"


def test_a_link_is_in_the_way_as_a_folder_and_as_the_file(tmp_path: Path) -> None:
    root, outside = tmp_path / "client", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "via").symlink_to(outside)
    (root / "a" / "file").symlink_to(outside / "x")
    assert client_tree.in_the_way(root, "a/via/x") == "a/via is a symbolic link on the server"
    assert client_tree.in_the_way(root, "a/file") == "a/file is a symbolic link on the server"


def test_a_path_the_disk_cannot_look_at_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    (root / "a").mkdir(parents=True)
    real = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).endswith("/a/b"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    assert client_tree.in_the_way(root, "a/b/c") == "a/b cannot be used: Input/output error"


# --- store: the file moved in, each refusal's message --------------------------------


def test_store_makes_each_folder_synced_into_its_parent_and_syncs_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    source = _source(tmp_path)
    synced = _fsyncs(monkeypatch)
    stored = client_tree.store(root, "a/b/c.txt", source)
    assert stored == root / "a" / "b" / "c.txt" and stored.read_bytes() == b"data"
    assert not source.exists()
    # a made (root synced), b made (a synced), then the file's folder after the rename
    assert synced == [str(root), str(root / "a"), str(root / "a" / "b")]
    assert (root / "a" / "b").stat().st_mode & 0o777 == 0o700
    # again: the folders are there, only the file's folder is synced
    synced.clear()
    client_tree.store(root, "a/b/c.txt", _source(tmp_path, data=b"v2"))
    assert synced == [str(root / "a" / "b")]
    assert stored.read_bytes() == b"v2"


def test_store_makes_the_clients_folder_itself(tmp_path: Path) -> None:
    root = tmp_path / "v4" / "files" / "0011"
    assert client_tree.store(root, "x", _source(tmp_path)) == root / "x"


def test_store_refusals_say_what_and_where(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "dir").mkdir(parents=True)
    (root / "plain").write_bytes(b"")
    with pytest.raises(NameInTheWay, match=r"^dir is a folder on the server$"):
        client_tree.store(root, "dir", _source(tmp_path))
    with pytest.raises(NameInTheWay, match=r"^plain is not a folder on the server$"):
        client_tree.store(root, "plain/x", _source(tmp_path))
    (root / "dir" / "deeper").write_bytes(b"")
    with pytest.raises(NameInTheWay, match=r"^dir/deeper is not a folder on the server$"):
        client_tree.store(root, "dir/deeper/x", _source(tmp_path))
    with pytest.raises(StorageError, match=r"^cannot store x: No such file or directory$"):
        client_tree.store(root, "x", tmp_path / "missing.part")


def test_a_link_as_the_clients_folder_is_not_opened(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "client"
    root.symlink_to(real)
    with pytest.raises(StorageError) as refused:
        client_tree.store(root, "x", _source(tmp_path))
    # O_DIRECTORY | O_NOFOLLOW on a link: Linux answers ENOTDIR
    assert str(refused.value) == "cannot open the client's folder: Not a directory"
    assert list(real.iterdir()) == []


def test_a_folder_that_cannot_be_opened_or_made_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    monkeypatch.setattr(os, "mkdir", _failing(errno.ENOSPC))
    with pytest.raises(StorageError, match=r"^cannot make a: No space left on device$"):
        client_tree.store(root, "a/x", _source(tmp_path))
    monkeypatch.undo()
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == "b":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(StorageError) as refused:
        client_tree.store(root, "b/x", _source(tmp_path))
    assert type(refused.value) is StorageError
    assert str(refused.value) == "cannot open b: Permission denied"


def test_a_sync_refused_fails_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "client"
    root.mkdir()
    monkeypatch.setattr(os, "fsync", _failing(errno.EIO))
    with pytest.raises(StorageError, match=r"^cannot sync the folder of x: Input/output error$"):
        client_tree.store(root, "x", _source(tmp_path))
    with pytest.raises(StorageError, match=r"^cannot sync the folder of a: Input/output error$"):
        client_tree.store(root, "a/y", _source(tmp_path))  # making a: its entry in root


def test_a_folder_made_meanwhile_by_another_upload_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    real_mkdir = os.mkdir

    def concurrent(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)  # the other upload won the race
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))

    monkeypatch.setattr(os, "mkdir", concurrent)
    stored = client_tree.store(root, "a/x", _source(tmp_path))
    assert stored.read_bytes() == b"data"


def test_a_folder_that_keeps_vanishing_is_given_up_after_two_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    real_open = os.open
    tries: list[str] = []

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == "a":
            tries.append(path)
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        return real_open(path, flags, *args, **kwargs)

    def exists(*args: object, **kwargs: object) -> None:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", exists)
    with pytest.raises(StorageError) as refused:
        client_tree.store(root, "a/x", _source(tmp_path))
    assert type(refused.value) is StorageError
    assert str(refused.value) == "cannot open a"
    assert tries == ["a", "a"]


def test_no_descriptor_is_left_open_whatever_the_outcome(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "blocked").mkdir(parents=True)
    (root / "blocked" / "file").write_bytes(b"")
    before = _open_fds()
    client_tree.store(root, "a/b/c/x", _source(tmp_path))
    with pytest.raises(NameInTheWay):
        client_tree.store(root, "blocked/file/x", _source(tmp_path))
    client_tree.make_folder(root, "d/e")
    client_tree.store_group(
        root, [("f/1", _source(tmp_path, "1")), ("g/2", _source(tmp_path, "2"))]
    )
    assert _open_fds() == before


# --- make_folder and store_group ------------------------------------------------------


def test_make_folder_makes_the_whole_path_private_and_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    synced = _fsyncs(monkeypatch)
    client_tree.make_folder(root, "empty/inner")
    assert (root / "empty" / "inner").is_dir()
    assert (root / "empty" / "inner").stat().st_mode & 0o777 == 0o700
    assert synced == [str(root), str(root / "empty")]
    (root / "file").write_bytes(b"")
    with pytest.raises(NameInTheWay, match=r"^file is not a folder on the server$"):
        client_tree.make_folder(root, "file/inner")


def test_a_group_syncs_each_folder_once_after_all_its_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    files = [
        ("a/1", _source(tmp_path, "1", b"one")),
        ("top", _source(tmp_path, "t", b"top")),
        ("a/2", _source(tmp_path, "2", b"two")),
        ("b/3", _source(tmp_path, "3", b"three")),
    ]
    synced = _fsyncs(monkeypatch)
    opened: list[object] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    stored = client_tree.store_group(root, files)
    assert stored == [root / "a" / "1", root / "top", root / "a" / "2", root / "b" / "3"]
    assert [p.read_bytes() for p in stored] == [b"one", b"top", b"two", b"three"]
    assert synced == [str(root / "a"), str(root), str(root / "b")]
    # each folder's descriptor opened once: the root per folder walked from it, a and b
    assert opened == [root, "a", root, root, "b"]


def test_a_group_refusal_names_the_file_and_keeps_the_ones_before(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "dir").mkdir(parents=True)
    first = _source(tmp_path, "1")
    with pytest.raises(NameInTheWay, match=r"^dir is a folder on the server$"):
        client_tree.store_group(root, [("ok", first), ("dir", _source(tmp_path, "2"))])
    assert (root / "ok").read_bytes() == b"data"
    with pytest.raises(StorageError, match=r"^cannot store gone: No such file or directory$"):
        client_tree.store_group(root, [("gone", tmp_path / "missing.part")])


def test_a_group_sync_refused_names_the_folder_or_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "client"
    (root / "a" / "b").mkdir(parents=True)
    monkeypatch.setattr(os, "fsync", _failing(errno.EIO))
    with pytest.raises(StorageError, match=r"^cannot sync the folder of \.: Input/output error$"):
        client_tree.store_group(root, [("x", _source(tmp_path))])
    with pytest.raises(StorageError, match=r"^cannot sync the folder of a/b: Input/output error$"):
        client_tree.store_group(root, [("a/b/y", _source(tmp_path))])
