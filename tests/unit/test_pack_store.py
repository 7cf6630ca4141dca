"""A pack's files on a real disk (server/eft_server/pack_store.py, feature PACK): staged
under random names in the client's folder of unfinished uploads, refused one by one
when something is in the way of the name (error 2) or the room is spent (error 8),
synced, renamed into place with their folders synced, or discarded; a disk error
leaves nothing behind. And ``client_tree.FolderCheck``, which looks at each folder of
a pack once."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.pack import PackedFile, Refusal
from eft_protocol.v4.records import ErrorCode
from eft_server import client_tree, pack_store
from eft_server.partial_uploads import PartialStore
from eft_server.storage import FILE_MODE, StorageError

CLIENT = bytes(range(16))


def _files(named: dict[str, bytes], first: int = 1) -> list[PackedFile]:
    return [
        PackedFile(first + n, name, file_digest(data).digest(), memoryview(data))
        for n, (name, data) in enumerate(named.items())
    ]


def _store(tmp_path: Path) -> PartialStore:
    return PartialStore(tmp_path / "data")


def _parts(store: PartialStore) -> list[Path]:
    return sorted(store.partial_dir.rglob("*.part"))


def _stage(
    store: PartialStore,
    named: dict[str, bytes],
    keep_free: int = 0,
    group: client_tree.GroupNames | None = None,
) -> Any:
    group = group if group is not None else client_tree.GroupNames()
    return pack_store.stage_pack(store, CLIENT, _files(named), 1, keep_free, group=group)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_staged_files_are_committed_under_their_names_synced_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    named = {"a.txt": b"alpha", "dir/sub/b.bin": b"\x00\x01", "dir/é.txt": b"", "c": b"c"}
    staged, refused = _stage(store, named)
    assert refused == {}
    assert [(f.name, f.size, f.digest_algorithm) for f in staged] == [
        (name, len(data), 1) for name, data in named.items()
    ]
    assert [f.part.read_bytes() for f in staged] == list(named.values()), "written at once"
    assert all(f.part.parent == store.partial_dir / CLIENT.hex() for f in staged)
    assert len({f.part for f in staged}) == 4
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    syncing = [pack_store.start_syncs(staged[:2])]  # the rest synced by the commit
    root = store.client_root(CLIENT)
    paths = pack_store.commit(root, staged, syncing)
    assert paths == [root.joinpath(*name.split("/")) for name in named]
    assert {p.relative_to(root).as_posix(): p.read_bytes() for p in paths} == named
    assert all(f.fd == -1 for f in staged), "every descriptor closed"
    parts = [path for path in synced if path.endswith(".part")]
    assert sorted(parts) == sorted(str(f.part) for f in staged), "each synced once"
    last_data = max(synced.index(path) for path in parts)
    folders = synced[last_data + 1 :]
    assert {str(p.parent) for p in paths} <= set(folders), "each file's folder synced after"
    assert _parts(store) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_a_file_is_synced_before_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"x/one": b"1", "x/two": b"2"})
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        calls.append(("rename", str(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    pack_store.commit(store.client_root(CLIENT), staged, [])
    kinds = [kind for kind, path in calls if kind == "rename" or path.endswith(".part")]
    assert kinds == ["sync", "sync", "rename", "rename"]
    assert calls[-1] == ("sync", str(store.client_root(CLIENT) / "x"))


@pytest.mark.parametrize(
    ("make", "name", "message"),
    [
        (lambda root: (root / "a").write_bytes(b"file"), "a/b", "a is a file on the server"),
        (lambda root: (root / "d").mkdir(), "d", "d is a folder on the server"),
        (lambda root: (root / "l").symlink_to("/tmp"), "l/x", "l is a symbolic link"),
        (lambda root: (root / "s").symlink_to("/etc/passwd"), "s", "s is a symbolic link"),
    ],
)
def test_something_in_the_way_refuses_that_file_alone(
    tmp_path: Path, make: Any, name: str, message: str
) -> None:
    store = _store(tmp_path)
    root = store.client_root(CLIENT)
    root.mkdir(parents=True)
    make(root)
    staged, refused = _stage(store, {"before": b"1", name: b"blocked", "after": b"2"})
    assert refused == {2: Refusal(ErrorCode.BAD_FILE_NAME, refused[2].message)}
    assert message in refused[2].message
    assert [f.name for f in staged] == ["before", "after"]
    assert len(_parts(store)) == 2, "nothing written for the refused file"
    pack_store.discard(staged)


def test_no_room_refuses_the_files_that_do_not_fit_and_stages_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    free = os.statvfs(store.partial_dir)
    monkeypatch.setattr(os, "statvfs", lambda path: free)  # the machine's others write too
    keep_free = store.room(0) - 1500  # room for 1,500 bytes
    named = {"a": b"a" * 1000, "b": b"b" * 1000, "c": b"c" * 400, "d": b"d" * 101, "e": b""}
    staged, refused = _stage(store, named, keep_free)
    # 1,000 taken leaves 500: b does not fit, c does, then 100 left: d does not, e does
    assert [f.name for f in staged] == ["a", "c", "e"]
    assert refused == {
        2: Refusal(
            ErrorCode.NO_SPACE,
            "no space: the file needs 1000 more bytes, the server has room for 500",
        ),
        4: Refusal(
            ErrorCode.NO_SPACE,
            "no space: the file needs 101 more bytes, the server has room for 100",
        ),
    }
    assert sorted(p.read_bytes() for p in _parts(store)) == [b"", b"a" * 1000, b"c" * 400]
    pack_store.discard(staged)


def test_with_no_room_at_all_an_empty_file_still_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    free = os.statvfs(store.partial_dir)
    monkeypatch.setattr(os, "statvfs", lambda path: free)
    staged, refused = _stage(store, {"full": b"x", "empty": b""}, store.room(0) + 10)
    assert [f.name for f in staged] == ["empty"]
    assert refused[1].message.endswith("the server has room for 0")
    pack_store.discard(staged)


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors by /proc")
def test_a_write_error_raises_and_leaves_no_part_and_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    real_write_all = pack_store._write_all
    written: list[int] = []

    def failing(fd: int, data: memoryview) -> None:
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(fd)
        real_write_all(fd, data)

    monkeypatch.setattr(pack_store, "_write_all", failing)
    before = _open_fds()
    with pytest.raises(StorageError, match="cannot store a packed file: No space left"):
        _stage(store, {"1": b"one", "2": b"two", "3": b"three", "4": b"four"})
    assert _parts(store) == []
    assert _open_fds() == before


def test_a_folder_it_cannot_make_raises_a_storage_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.partial_dir / CLIENT.hex()).write_bytes(b"a file where the folder goes")
    with pytest.raises(StorageError, match="cannot store a packed file"):
        _stage(store, {"x": b"x"})


def test_a_sync_error_raises_and_closes_every_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"1": b"1", "2": b"2", "3": b"3"})

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StorageError, match="cannot sync a packed file: Input/output error"):
        pack_store.sync_and_close(staged)
    assert [f.fd for f in staged] == [-1, -1, -1]
    pack_store.discard(staged)
    assert _parts(store) == []


def test_a_commit_waits_for_the_syncs_and_fails_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"q/1": b"1", "q/2": b"2"})

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    syncing = [pack_store.start_syncs(staged)]
    with pytest.raises(StorageError, match="cannot sync"):
        pack_store.commit(store.client_root(CLIENT), staged, syncing)
    assert not (store.client_root(CLIENT) / "q").exists(), "nothing renamed into place"
    pack_store.discard(staged)
    assert _parts(store) == []


def test_discard_closes_and_removes_the_parts(tmp_path: Path) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"1": b"1", "2": b"2"})
    staged[0].part.unlink()  # already gone: not an error
    pack_store.discard(staged)
    assert _parts(store) == [] and [f.fd for f in staged] == [-1, -1]
    pack_store.discard(staged)  # twice: nothing closed twice


def test_parts_left_by_a_crash_are_removed_at_the_next_start(tmp_path: Path) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"1": b"1", "2": b"2"})
    pack_store.sync_and_close(staged)  # the crash: never committed, never discarded
    assert len(_parts(store)) == 2
    assert _store(tmp_path).remove_leftovers() == 2
    assert _parts(store) == []


def test_an_empty_pack_touches_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert pack_store.stage_pack(store, CLIENT, [], 1, 0, group=client_tree.GroupNames()) == (
        [],
        {},
    )
    assert not (store.partial_dir / CLIENT.hex()).exists()


# --- FolderCheck --------------------------------------------------------------------


def test_folder_check_agrees_with_in_the_way(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"")
    (root / "link").symlink_to(root / "dir")
    names = [
        "new",
        "new/deeper/x",
        "dir/x",
        "dir/sub",
        "dir/sub/x",
        "dir/file",
        "dir/file/x",
        "link",
        "link/x",
        "dir/link2/x",
    ]
    check = client_tree.FolderCheck(root)
    assert [check.in_the_way(name) for name in names] == [
        client_tree.in_the_way(root, name) for name in names
    ]
    assert [check.in_the_way(name) is None for name in names] == [
        True,
        True,
        True,
        False,
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_folder_check_looks_at_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    looked: list[str] = []
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
        looked.append(Path(path).relative_to(root).as_posix())
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    check = client_tree.FolderCheck(root)
    for n in range(50):
        assert check.in_the_way(f"a/b/f{n}") is None
    assert looked.count("a") == 1 and looked.count("a/b") == 1
    assert len(looked) == 2 + 50  # the folders once, each file's own name once


def test_folder_check_stops_below_a_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    looked: list[str] = []
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
        looked.append(Path(path).relative_to(root).as_posix())
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    check = client_tree.FolderCheck(root)
    assert check.in_the_way("m/n/o") is None
    assert check.in_the_way("m/n/p") is None
    assert looked == ["m"]


# --- GroupNames: a file and a folder of one name in one group ------------------------


def test_a_file_where_a_folder_of_the_group_goes_is_in_the_way_and_so_is_the_reverse() -> None:
    group = client_tree.GroupNames()
    group.add("a")
    group.add("photos/2024/x.jpg")
    assert group.in_the_way("a/b") == "a is a file sent with it, not a folder"
    assert group.in_the_way("a/b/c") == "a is a file sent with it, not a folder"
    assert group.in_the_way("photos/2024") == "photos/2024 is a folder of another file sent with it"
    assert group.in_the_way("photos") == "photos is a folder of another file sent with it"
    # neighbours, the same name again (it replaces the first), and a longer sibling
    for free in ("b", "ab", "a.txt", "photos/2024/y.jpg", "photos/2024/x.jpg", "photos2/x"):
        assert group.in_the_way(free) is None, free
    group.clear()
    assert group.in_the_way("a/b") is None and group.in_the_way("photos") is None


def test_a_pack_refuses_a_name_its_group_has_as_a_file_and_stages_the_rest(
    tmp_path: Path,
) -> None:
    """``a`` staged by an earlier pack of the group: ``a/b`` is refused before its data
    (error 2), not found at the commit, which would fail the whole group."""
    store = _store(tmp_path)
    group = client_tree.GroupNames()
    staged, refused = _stage(store, {"a": b"file"}, group=group)
    assert [file.name for file in staged] == ["a"] and refused == {}
    staged2, refused2 = _stage(store, {"a/b": b"x", "c/d": b"y"}, group=group)
    assert [file.name for file in staged2] == ["c/d"]
    assert refused2 == {
        1: Refusal(ErrorCode.BAD_FILE_NAME, "a is a file sent with it, not a folder")
    }
    pack_store.sync_and_close(staged + staged2)
    paths = pack_store.commit(store.client_root(CLIENT), staged + staged2, [])
    assert [path.read_bytes() for path in paths] == [b"file", b"y"]


# --- what the first round of mutation testing left (docs/TESTING.md, eighth round) ------


def test_a_staged_file_is_made_readable_by_the_server_alone(tmp_path: Path) -> None:
    """Mode 0600 from its creation (``FILE_MODE``), as every other stored file: another
    user of the machine never reads a client's file, even before the rename."""
    store = _store(tmp_path)
    staged, _ = _stage(store, {"secret": b"s"})
    assert stat.S_IMODE(staged[0].part.stat().st_mode) == FILE_MODE
    pack_store.sync_and_close(staged)
    (path,) = pack_store.commit(store.client_root(CLIENT), staged, [])
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def test_a_short_write_is_carried_on_until_the_file_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.write`` may write less than asked (a signal, a full pipe of a FUSE disk)."""
    real_write = os.write

    def a_few_bytes(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", a_few_bytes)
    store = _store(tmp_path)
    staged, _ = _stage(store, {"long": b"0123456789" * 5, "short": b"ab"})
    assert [f.part.read_bytes() for f in staged] == [b"0123456789" * 5, b"ab"]
    pack_store.discard(staged)


@pytest.fixture
def stdin_closed() -> Iterator[None]:
    """Descriptor 0 free, as in a server started with its standard input closed: the
    next file opened gets it. In this process, not a forked child: mutmut runs for a
    mutant only the tests it saw call the function, and a child's calls go unseen.
    Nothing else runs meanwhile that opens a file (the pools' threads are idle)."""
    saved = os.dup(0)
    os.close(0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_file_on_descriptor_0_is_synced_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdin_closed: None
) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"first": b"1"})
    assert staged[0].fd == 0
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pack_store.sync_and_close(staged)
    assert synced == [0] and staged[0].fd == -1 and not _is_open(0)


def test_a_file_on_descriptor_0_is_closed_by_discard(tmp_path: Path, stdin_closed: None) -> None:
    store = _store(tmp_path)
    staged, _ = _stage(store, {"first": b"1"})
    assert staged[0].fd == 0
    pack_store.discard(staged)
    assert staged[0].fd == -1 and not _is_open(0) and _parts(store) == []


def test_discard_goes_on_past_a_close_or_an_unlink_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discarding runs on a failure path already: one part it cannot close or remove
    (the next start takes that) does not keep it from the others, nor raise."""
    store = _store(tmp_path)
    staged, _ = _stage(store, {"1": b"1", "2": b"2", "3": b"3"})
    real_close, real_unlink = os.close, Path.unlink

    def close(fd: int) -> None:
        real_close(fd)  # Linux frees the descriptor even when close reports an error
        if fd == staged[0].fd:
            raise OSError(errno.EIO, "Input/output error")

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path == staged[1].part:
            raise PermissionError(errno.EACCES, "Permission denied")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(os, "close", close)
    monkeypatch.setattr(Path, "unlink", unlink)
    pack_store.discard(staged)
    assert [f.fd for f in staged] == [-1, -1, -1]
    assert _parts(store) == [staged[1].part]


def test_a_file_deep_in_the_group_is_in_the_way_of_a_name_below_it() -> None:
    """``GroupNames`` joins a name's folders as the name itself is written: a file
    ``a/b/c`` is found as the folder of ``a/b/c/d``, not only a top-level one."""
    group = client_tree.GroupNames()
    group.add("a/b/c")
    assert group.in_the_way("a/b/c/d") == "a/b/c is a file sent with it, not a folder"
    assert group.in_the_way("a/b/c/d/e") == "a/b/c is a file sent with it, not a folder"
    assert group.in_the_way("a/b") == "a/b is a folder of another file sent with it"
    assert group.in_the_way("a/b/d") is None
