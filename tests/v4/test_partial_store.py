"""Version 4's unfinished uploads on disk, in process (server/eft_server/partial_uploads.py):
the layout and progress record, what a resume trusts, the sweeps, and every quota reason.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import structlog.testing

from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.records import CHUNK
from eft_server import partial_uploads
from eft_server.config import ServerConfig
from eft_server.partial_uploads import (
    PartialQuota,
    PartialStore,
    PartialUpload,
    UploadBusy,
    partial_quota,
)
from eft_server.storage import StorageError

ALICE, BOB = b"\x0a" * 16, b"\x0b" * 16
UPLOAD = bytes(range(16))


def _data(chunks: float) -> bytes:
    size = int(chunks * CHUNK)
    return bytes(i % 251 for i in range(size))


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, max(len(data), 1), CHUNK)]


def _files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _record(upload: PartialUpload) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(upload.sidecar.read_text())
    return loaded


def test_the_quota_is_the_configured_one() -> None:
    config = ServerConfig(
        max_partial_uploads_per_client=3,
        max_partial_bytes_per_client=5,
        max_partial_uploads=7,
        max_partial_bytes=11,
    )
    assert partial_quota(config) == PartialQuota(
        uploads_per_client=3, bytes_per_client=5, uploads=7, bytes=11
    )


def test_an_upload_s_files_and_its_progress_record(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    assert (store.files_dir, store.partial_dir) == (tmp_path / "v4/files", tmp_path / "v4/partial")
    assert store.files_dir.is_dir() and store.partial_dir.is_dir()
    assert store.final_path(ALICE, "a.txt") == tmp_path / "v4/files" / ALICE.hex() / "a.txt"
    upload = store.open(ALICE, UPLOAD, "a.txt", 3 * CHUNK)
    directory = store.partial_dir / ALICE.hex()
    assert (upload.part, upload.sidecar) == (
        directory / f"{UPLOAD.hex()}.part",
        directory / f"{UPLOAD.hex()}.json",
    )
    assert (upload.name, upload.size, upload.durable_chunks, upload.written_chunks) == (
        "a.txt",
        3 * CHUNK,
        0,
        0,
    )
    assert _record(upload) == {"name": "a.txt", "size": 3 * CHUNK, "durable_chunks": 0}
    assert _files(directory) == [f"{UPLOAD.hex()}.json", f"{UPLOAD.hex()}.part"]
    assert stat.S_IMODE(upload.part.stat().st_mode) == 0o600
    assert stat.S_IMODE(upload.sidecar.stat().st_mode) == 0o600
    assert store.usage() == (1, 0)
    upload.write(1, _data(1))
    upload.write(2, _data(1))
    assert (upload.written_chunks, upload.durable_chunks, upload.received) == (2, 0, 2 * CHUNK)
    assert store.usage() == (1, 0)  # counted again when the progress is recorded
    upload.sync()
    assert upload.durable_chunks == 2
    assert _record(upload) == {"name": "a.txt", "size": 3 * CHUNK, "durable_chunks": 2}
    assert store.usage() == (1, 2 * CHUNK)
    assert not upload.sidecar.with_suffix(".json.tmp").exists()


def test_chunks_are_written_in_order_only(tmp_path: Path) -> None:
    upload = PartialStore(tmp_path).open(ALICE, UPLOAD, "a", 3 * CHUNK)
    with pytest.raises(AssertionError):
        upload.write(2, _data(1))
    upload.write(1, _data(1))
    with pytest.raises(AssertionError):
        upload.write(1, _data(1))


def test_a_resume_trusts_only_the_whole_chunks_that_are_there(tmp_path: Path) -> None:
    data = _data(4.5)
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.bin", len(data))
    for index, piece in enumerate(_pieces(data)[:3], start=1):
        upload.write(index, piece)
    upload.suspend()  # synced: the record says 3
    assert _record(upload)["durable_chunks"] == 3
    with open(upload.part, "r+b") as handle:  # cut short by hand: 2.5 chunks left
        handle.truncate(2 * CHUNK + CHUNK // 2)
    resumed = store.open(ALICE, UPLOAD, "a.bin", len(data))
    assert (resumed.durable_chunks, resumed.written_chunks, resumed.received) == (
        2,
        2,
        2 * CHUNK,
    )
    assert resumed.part.stat().st_size == 2 * CHUNK  # the half chunk is gone
    assert _record(resumed)["durable_chunks"] == 2
    for index, piece in enumerate(_pieces(data)[2:], start=3):
        resumed.write(index, piece)
    assert resumed.finish() == file_digest(data).digest()  # the prefix read back
    final = resumed.commit(store.client_root(ALICE), "a.bin")
    assert final.read_bytes() == data


def test_bytes_past_the_durable_chunks_are_dropped_at_a_resume(tmp_path: Path) -> None:
    data = _data(3)
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.bin", len(data))
    upload.write(1, _pieces(data)[0])
    upload.sync()
    upload.write(2, _pieces(data)[1])  # written, never synced nor recorded
    upload._close()  # the server died: nothing more recorded
    resumed = store.open(ALICE, UPLOAD, "a.bin", len(data))
    assert resumed.durable_chunks == 1
    assert resumed.part.stat().st_size == CHUNK


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        json.dumps({"name": "a.bin", "size": 3 * CHUNK}),  # no durable_chunks
        json.dumps({"name": "b.bin", "size": 3 * CHUNK, "durable_chunks": 2}),
        json.dumps({"name": "a.bin", "size": 4 * CHUNK, "durable_chunks": 2}),
    ],
    ids=["garbled", "incomplete", "another-name", "another-size"],
)
def test_a_record_that_does_not_match_starts_afresh_and_empties_the_file(
    tmp_path: Path, record: str
) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.bin", 3 * CHUNK)
    upload.write(1, _data(1))
    upload.write(2, _data(1))
    upload.suspend()
    upload.sidecar.write_text(record)
    fresh = store.open(ALICE, UPLOAD, "a.bin", 3 * CHUNK)
    assert (fresh.durable_chunks, fresh.received) == (0, 0)
    assert fresh.part.stat().st_size == 0
    assert _record(fresh) == {"name": "a.bin", "size": 3 * CHUNK, "durable_chunks": 0}


def test_a_record_without_its_file_starts_afresh(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.bin", 3 * CHUNK)
    upload.write(1, _data(1))
    upload.suspend()
    upload.part.unlink()
    fresh = store.open(ALICE, UPLOAD, "a.bin", 3 * CHUNK)
    assert fresh.durable_chunks == 0
    assert fresh.part.stat().st_size == 0


def test_a_busy_upload_is_refused_until_released(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 10)
    with pytest.raises(UploadBusy, match=r"^this upload is still open on another connection$"):
        store.open(ALICE, UPLOAD, "a", 10)
    other = store.open(BOB, UPLOAD, "a", 10)  # the same upload id, another client: free
    upload.suspend()
    store.open(ALICE, UPLOAD, "a", 10)
    other.discard()
    store.open(BOB, UPLOAD, "a", 10)


def test_a_client_directory_that_cannot_be_made_refuses_the_open(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    (store.partial_dir / ALICE.hex()).write_bytes(b"a file in the way")
    with pytest.raises(StorageError, match=r"^cannot open the upload: "):
        store.open(ALICE, UPLOAD, "a", 10)
    with pytest.raises(StorageError, match=r"^cannot open the upload: "):
        store.open(ALICE, UPLOAD, "a", 10)  # refused again, not busy


def test_a_file_that_cannot_be_opened_refuses_the_open_and_frees_it(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    part = store.partial_dir / ALICE.hex() / f"{UPLOAD.hex()}.part"
    part.mkdir(parents=True)  # a directory where the upload's file goes
    with pytest.raises(StorageError, match=r"^cannot open the upload: "):
        store.open(ALICE, UPLOAD, "a", 10)
    part.rmdir()
    store.open(ALICE, UPLOAD, "a", 10)


def test_suspend_keeps_the_upload_and_frees_it_and_twice_is_harmless(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.write(1, _data(1))
    upload.suspend()
    upload.suspend()
    assert upload.part.stat().st_size == CHUNK
    assert _record(upload)["durable_chunks"] == 1
    assert store.usage() == (1, CHUNK)
    assert store.open(ALICE, UPLOAD, "a", 2 * CHUNK).durable_chunks == 1


def test_commit_moves_the_file_and_forgets_the_upload(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.txt", 5)
    upload.write(1, b"hello")
    assert upload.finish() == file_digest(b"hello").digest()
    final = upload.commit(store.client_root(ALICE), "a.txt")
    assert final == store.final_path(ALICE, "a.txt")
    assert final.read_bytes() == b"hello"
    assert _files(store.partial_dir / ALICE.hex()) == []
    assert store.usage() == (0, 0)
    again = store.open(ALICE, UPLOAD, "a.txt", 5)  # not busy, and fresh
    assert again.durable_chunks == 0


def test_a_commit_onto_a_folder_says_so(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.txt", 5)
    upload.write(1, b"hello")
    upload.finish()
    final = store.final_path(ALICE, "a.txt")
    final.mkdir(parents=True)
    (final / "inside").write_bytes(b"")  # a non-empty directory cannot be replaced
    with pytest.raises(StorageError, match=r"^a\.txt is a folder on the server$"):
        upload.commit(store.client_root(ALICE), "a.txt")


def test_discard_removes_every_file_of_the_upload(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.write(1, _data(1))
    upload.sidecar.with_suffix(".json.tmp").write_bytes(b"half")
    upload.discard()
    assert _files(store.partial_dir / ALICE.hex()) == []
    assert store.usage() == (0, 0)
    assert store.open(ALICE, UPLOAD, "a", 2 * CHUNK).durable_chunks == 0


def test_a_new_store_counts_the_uploads_on_disk(tmp_path: Path) -> None:
    before = PartialStore(tmp_path)
    for number, chunks in ((1, 1), (2, 2)):
        upload = before.open(ALICE, bytes([number]) * 16, "a", 4 * CHUNK)
        for index in range(1, chunks + 1):
            upload.write(index, _data(1))
        upload.suspend()
    upload = before.open(BOB, UPLOAD, "b", 4 * CHUNK)
    upload.write(1, _data(1))
    upload.suspend()
    assert PartialStore(tmp_path).usage() == (3, 4 * CHUNK)


def test_leftovers_a_resume_cannot_use_are_removed_at_start_up(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.write(1, _data(1))
    upload.suspend()
    directory = store.partial_dir / ALICE.hex()
    (directory / "01.json.tmp").write_bytes(b"half-written")
    (directory / "02.part").write_bytes(b"no record")
    (directory / "03.json").write_text("{}")  # a record without its file
    (directory / "04.dir").mkdir()  # not a file: left as it is
    assert PartialStore(tmp_path).remove_leftovers() == 3
    assert _files(directory) == [f"{UPLOAD.hex()}.json", f"{UPLOAD.hex()}.part", "04.dir"]


def test_uploads_nobody_resumed_in_time_expire_unless_held(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    old = store.open(ALICE, b"\x01" * 16, "old", 2 * CHUNK)
    old.write(1, _data(1))
    old.suspend()
    held = store.open(ALICE, b"\x02" * 16, "held", 2 * CHUNK)
    recent = store.open(BOB, b"\x03" * 16, "recent", 2 * CHUNK)
    recent.suspend()
    for sidecar in (old.sidecar, held.sidecar):
        os.utime(sidecar, (1000.0, 1000.0))
    assert store.remove_expired(3600) == 1
    assert not old.part.exists() and not old.sidecar.exists()
    assert held.part.exists() and recent.part.exists()
    assert store.usage() == (2, 0)
    assert store.remove_expired(3600) == 0


def _kept(store: PartialStore, client: bytes, number: int, chunks: int = 1) -> Path:
    """An upload of ``chunks`` chunks kept after a break, older than the ones after it."""
    upload = store.open(client, bytes([number]) * 16, f"f{number}", 8 * CHUNK)
    for index in range(1, chunks + 1):
        upload.write(index, _data(1))
    upload.suspend()
    return upload.part


@pytest.mark.parametrize(
    ("quota", "reason"),
    [
        (PartialQuota(uploads_per_client=2), "client_uploads"),
        (PartialQuota(bytes_per_client=3 * CHUNK), "client_bytes"),
        (PartialQuota(uploads=2), "server_uploads"),
        (PartialQuota(bytes=3 * CHUNK), "server_bytes"),
    ],
)
def test_each_limit_drops_the_oldest_idle_upload_and_names_itself(
    tmp_path: Path, quota: PartialQuota, reason: str
) -> None:
    drops: list[tuple[str, int]] = []
    store = PartialStore(tmp_path, quota, on_drop=lambda why, size: drops.append((why, size)))
    oldest = _kept(store, ALICE, 1, chunks=2)
    second = _kept(store, ALICE, 2, chunks=1)
    assert drops == []
    newest = _kept(store, ALICE, 3, chunks=1)  # now 3 uploads, 4 chunks: one over
    assert drops == [(reason, 2 * CHUNK)]
    assert not oldest.exists() and not oldest.with_suffix(".json").exists()
    assert second.exists() and newest.exists()
    assert store.usage() == (2, 2 * CHUNK)


def test_the_limits_are_met_exactly_not_more(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    quota = PartialQuota(
        uploads_per_client=3, bytes_per_client=3 * CHUNK, uploads=3, bytes=3 * CHUNK
    )
    store = PartialStore(tmp_path, quota, on_drop=lambda why, size: drops.append((why, size)))
    for number in range(1, 4):
        _kept(store, ALICE, number)
    assert drops == []
    assert store.usage() == (3, 3 * CHUNK)
    assert store.enforce_quota() == 0
    assert store.enforce_quota(ALICE.hex()) == 0


def test_a_client_limit_drops_as_many_as_needed_oldest_first(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    store = PartialStore(tmp_path, on_drop=lambda why, size: drops.append((why, size)))
    parts = [_kept(store, ALICE, number) for number in range(1, 5)]
    other = _kept(store, BOB, 9)
    store.quota = PartialQuota(uploads_per_client=1)  # lowered: enforced on the next turn
    assert store.enforce_quota(BOB.hex()) == 0  # only bob's limits (and the server's)
    assert store.enforce_quota() == 3
    assert drops == [("client_uploads", CHUNK)] * 3
    assert [part.exists() for part in parts] == [False, False, False, True]
    assert other.exists()


def test_the_server_limit_drops_across_clients_oldest_first(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    store = PartialStore(tmp_path, on_drop=lambda why, size: drops.append((why, size)))
    first = _kept(store, ALICE, 1)
    second = _kept(store, BOB, 2, chunks=2)
    third = _kept(store, ALICE, 3)
    store.quota = PartialQuota(uploads=1)
    assert store.enforce_quota(ALICE.hex()) == 2
    assert drops == [("server_uploads", CHUNK), ("server_uploads", 2 * CHUNK)]
    assert (first.exists(), second.exists(), third.exists()) == (False, False, True)


def test_a_held_or_spared_upload_is_skipped_and_the_next_oldest_goes(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    held = store.open(ALICE, b"\x01" * 16, "held", 8 * CHUNK)
    held.write(1, _data(1))
    spared = _kept(store, ALICE, 2)
    idle = _kept(store, ALICE, 3)
    store.quota = PartialQuota(uploads=2, uploads_per_client=2)
    assert store.enforce_quota(ALICE.hex(), keep=spared) == 1
    assert held.part.exists() and spared.exists() and not idle.exists()


def test_an_index_skips_a_record_whose_file_is_gone_and_groups_by_client(
    tmp_path: Path,
) -> None:
    before = PartialStore(tmp_path)
    for client in (ALICE, BOB):
        for number in (1, 2):
            _kept(before, client, number)
    orphan = before.partial_dir / ALICE.hex() / ("09" * 16 + ".json")
    orphan.write_text("{}")  # its .part is gone: nothing to count
    after = PartialStore(tmp_path, PartialQuota(uploads_per_client=2))
    assert after.usage() == (4, 4 * CHUNK)
    assert after.enforce_quota() == 0  # two each: every client within its limit


def test_the_oldest_is_the_least_recently_used_whatever_its_name(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    parts = [_kept(store, ALICE, number) for number in (9, 5, 1)]  # oldest: "09..."
    store.quota = PartialQuota(uploads_per_client=2)
    assert store.enforce_quota(ALICE.hex()) == 1
    assert [part.exists() for part in parts] == [False, True, True]
    store.open(ALICE, bytes([5]) * 16, "f5", 8 * CHUNK).suspend()  # 5 is now the newest
    store.quota = PartialQuota(uploads_per_client=1)
    assert store.enforce_quota(ALICE.hex()) == 1
    assert [part.exists() for part in parts] == [False, True, False]


def test_a_client_limit_skips_a_held_upload_and_drops_the_next(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    held = store.open(ALICE, b"\x01" * 16, "held", 8 * CHUNK)
    idle = [_kept(store, ALICE, number) for number in (2, 3)]
    store.quota = PartialQuota(uploads_per_client=2)  # the server's limits are far
    assert store.enforce_quota(ALICE.hex()) == 1
    assert held.part.exists() and not idle[0].exists() and idle[1].exists()


def test_at_the_count_limit_a_client_s_bytes_are_what_is_broken(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    store = PartialStore(tmp_path, on_drop=lambda why, size: drops.append((why, size)))
    for number in (1, 2):
        _kept(store, ALICE, number, chunks=2)
    store.quota = PartialQuota(uploads_per_client=2, bytes_per_client=3 * CHUNK)
    assert store.enforce_quota(ALICE.hex()) == 1
    assert drops == [("client_bytes", 2 * CHUNK)]


def test_a_suspend_checks_its_own_client_s_limits_not_the_others(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    bobs = [_kept(store, BOB, number) for number in (1, 2, 3)]
    store.quota = PartialQuota(uploads_per_client=2)  # lowered: bob is over it
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.suspend()
    assert all(part.exists() for part in bobs)  # bob's turn comes with bob's uploads


def test_expiry_counts_each_upload_and_sweeps_one_whose_file_is_gone(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    parts = [_kept(store, ALICE, number) for number in (1, 2, 3)]
    parts[2].unlink()  # its record stays, without its file
    for part in parts:
        os.utime(part.with_suffix(".json"), (1000.0, 1000.0))
    assert store.remove_expired(3600) == 3
    assert _files(store.partial_dir / ALICE.hex()) == []


def test_expiry_goes_on_past_an_upload_it_cannot_remove(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    stuck = store.partial_dir / ALICE.hex() / ("01" * 16 + ".part")
    stuck.mkdir(parents=True)  # a directory: it cannot be unlinked
    stuck.with_suffix(".json").write_text("{}")
    gone = _kept(store, BOB, 2)
    for sidecar in (stuck.with_suffix(".json"), gone.with_suffix(".json")):
        os.utime(sidecar, (1000.0, 1000.0))
    assert store.remove_expired(3600) == 1
    assert not gone.exists() and stuck.with_suffix(".json").exists()


def test_a_leftover_someone_else_removed_first_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PartialStore(tmp_path)
    directory = store.partial_dir / ALICE.hex()
    directory.mkdir()
    raced, other = directory / "01.json.tmp", directory / "02.json.tmp"
    raced.write_bytes(b"")
    other.write_bytes(b"")
    real_unlink = Path.unlink

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path == raced:  # removed by another process between the listing and here
            real_unlink(path)
            raise FileNotFoundError(str(path))
        real_unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert store.remove_leftovers() == 1
    assert _files(directory) == []


def test_a_dropped_upload_goes_whole_whatever_is_left_of_it(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    no_file = _kept(store, ALICE, 1)
    with_temp = _kept(store, ALICE, 2)
    blocked = _kept(store, ALICE, 3)
    keep = _kept(store, ALICE, 4)
    no_file.unlink()  # counted already; its record must still go
    with_temp.with_suffix(".json.tmp").write_bytes(b"half")
    blocked.with_suffix(".json.tmp").mkdir()  # cannot go: the others still do
    store.quota = PartialQuota(uploads_per_client=1)
    assert store.enforce_quota() == 3
    names = _files(store.partial_dir / ALICE.hex())
    assert names == sorted([blocked.with_suffix(".json.tmp").name, keep.name, keep.stem + ".json"])


def test_forgetting_an_upload_frees_it(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 10)
    store.forget(upload.part)
    store.forget(upload.part)  # twice: harmless
    store.open(ALICE, UPLOAD, "a", 10)  # not busy


def test_discarding_twice_or_after_the_file_went_removes_the_rest(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.part.unlink()
    upload.discard()
    assert not upload.sidecar.exists()
    upload.discard()
    assert store.usage() == (0, 0)


def test_a_commit_without_its_progress_record_still_commits(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a.txt", 5)
    upload.write(1, b"hello")
    upload.finish()
    upload.sidecar.unlink()
    assert upload.commit(store.client_root(ALICE), "a.txt").read_bytes() == b"hello"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_an_upload_s_file_is_closed_when_it_is_suspended_or_committed(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    before = _open_fds()
    upload = store.open(ALICE, UPLOAD, "a", 5)
    upload.write(1, b"hello")
    upload.suspend()
    assert _open_fds() == before
    resumed = store.open(ALICE, UPLOAD, "a", 5)
    resumed.write(1, b"hello")
    resumed.finish()
    resumed.commit(store.client_root(ALICE), "a")
    assert _open_fds() == before


def test_a_sync_the_disk_refused_fails_the_upload_but_not_its_suspend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    upload.write(1, _data(1))

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match=r"^cannot sync: \[Errno 5\] Input/output error$"):
        upload.sync()
    upload.suspend()  # the connection broke: what is durable stays, nothing raised
    monkeypatch.undo()
    assert store.open(ALICE, UPLOAD, "a", 2 * CHUNK).durable_chunks == 0  # not busy


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_the_disk_refused_says_so(tmp_path: Path) -> None:
    upload = PartialStore(tmp_path).open(ALICE, UPLOAD, "a", 2 * CHUNK)
    full = open("/dev/full", "wb")  # noqa: SIM115 - handed to the upload, closed by it
    upload._handle.close()  # type: ignore[union-attr]
    upload._handle = full  # every write now meets ENOSPC
    upload.write(1, _data(1))  # written in the background: its error comes next
    with pytest.raises(StorageError, match=r"^cannot write: \[Errno 28\] No space left"):
        upload.write(2, _data(1))
    upload.discard()


def test_background_syncs_record_whole_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partial_uploads, "SYNC_EVERY", 2)
    upload = PartialStore(tmp_path).open(ALICE, UPLOAD, "a", 4 * CHUNK)
    upload.write(1, _data(1))
    upload.write(2, _data(1))
    upload._settle()  # chunk 2 is written in the background; its write starts the sync
    upload._behind.wait()
    upload.write(3, _data(1))  # takes in the finished sync and records it
    assert upload.durable_chunks == 2
    assert upload.sidecar.read_text() == '{"name": "a", "size": 4194304, "durable_chunks": 2}'
    upload.discard()


def test_a_drop_is_logged_with_whose_upload_its_size_and_why(tmp_path: Path) -> None:
    # An earlier test in this process may have configured structlog to drop warnings (a
    # server's --log-level): capture_logs replaces the processors, not that level filter.
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    try:
        with structlog.testing.capture_logs() as logs:
            store = PartialStore(tmp_path, PartialQuota(uploads_per_client=1))
            _kept(store, ALICE, 1, chunks=2)
            _kept(store, ALICE, 2)
    finally:
        structlog.configure(**saved)
    dropped = [entry for entry in logs if entry["event"] == "partial_upload_dropped"]
    assert dropped == [
        {
            "event": "partial_upload_dropped",
            "client_id": ALICE.hex(),
            "upload_id": "01" * 16,
            "bytes": 2 * CHUNK,
            "reason": "client_uploads",
            "log_level": "warning",
        }
    ]


def test_the_server_limit_skips_held_and_spared_uploads(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    held = store.open(ALICE, b"\x01" * 16, "held", 8 * CHUNK)
    spared = _kept(store, BOB, 2)
    idle = _kept(store, ALICE, 3)
    store.quota = PartialQuota(uploads=2)  # every client within its own limits
    assert store.enforce_quota(keep=spared) == 1
    assert held.part.exists() and spared.exists() and not idle.exists()


def test_at_the_server_s_count_limit_its_bytes_are_what_is_broken(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    store = PartialStore(tmp_path, on_drop=lambda why, size: drops.append((why, size)))
    _kept(store, ALICE, 1, chunks=2)
    _kept(store, BOB, 2, chunks=2)
    store.quota = PartialQuota(uploads=2, bytes=3 * CHUNK)
    assert store.enforce_quota() == 1
    assert drops == [("server_bytes", 2 * CHUNK)]


def test_an_open_checks_its_own_client_s_limits_not_the_others(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    bobs = [_kept(store, BOB, number) for number in (1, 2, 3)]
    store.quota = PartialQuota(uploads_per_client=2)
    store.open(ALICE, UPLOAD, "a", 2 * CHUNK)
    assert all(part.exists() for part in bobs)


def test_a_store_whose_directory_went_refuses_the_open(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    store.partial_dir.rmdir()
    store.partial_dir.write_bytes(b"a file where the directory was")
    with pytest.raises(
        StorageError, match=r"^cannot open the upload: \[Errno 20\] Not a directory"
    ):
        store.open(ALICE, UPLOAD, "a", 10)


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_an_open_that_fails_midway_removes_only_a_fresh_upload_s_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resumed: bool
) -> None:
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 3 * CHUNK)
    upload.write(1, _data(1))
    upload.suspend() if resumed else upload.discard()
    if not resumed:
        upload.part.write_bytes(b"stale bytes, no record")

    def no_digest(algorithm: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(partial_uploads, "hasher_for", no_digest)
    with pytest.raises(StorageError, match=r"^cannot open the upload: \[Errno 5\] Input/output"):
        store.open(ALICE, UPLOAD, "a", 3 * CHUNK)
    assert upload.part.exists() is resumed
    monkeypatch.undo()
    store.open(ALICE, UPLOAD, "a", 3 * CHUNK)  # free again


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_an_open_whose_progress_cannot_be_recorded_keeps_only_a_resumable_file(
    tmp_path: Path, resumed: bool
) -> None:
    store = PartialStore(tmp_path)
    if resumed:
        upload = store.open(ALICE, UPLOAD, "a", 3 * CHUNK)
        upload.write(1, _data(1))
        upload.suspend()
    part = store.partial_dir / ALICE.hex() / f"{UPLOAD.hex()}.part"
    temp = part.with_suffix(".json.tmp")
    temp.mkdir(parents=True)  # the progress record cannot be written
    with pytest.raises(StorageError, match=r"^cannot record progress: \[Errno 21\] Is a direct"):
        store.open(ALICE, UPLOAD, "a", 3 * CHUNK)
    assert part.exists() is resumed
    if resumed:
        assert part.stat().st_size == CHUNK


def test_a_resumed_upload_s_background_syncs_count_from_what_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partial_uploads, "SYNC_EVERY", 2)
    store = PartialStore(tmp_path)
    first = store.open(ALICE, UPLOAD, "a", 6 * CHUNK)
    first.write(1, _data(1))
    first.write(2, _data(1))
    first.suspend()
    resumed = store.open(ALICE, UPLOAD, "a", 6 * CHUNK)
    assert resumed.durable_chunks == 2
    resumed.write(3, _data(1))
    resumed.write(4, _data(1))
    resumed._settle()  # chunk 4 is written in the background; its write starts the sync
    resumed._behind.wait()
    resumed.write(5, _data(1))  # takes in the sync of chunks 3 and 4
    assert resumed.durable_chunks == 4
    resumed.discard()


def test_a_name_is_a_path_under_the_client_s_folder(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    root = store.client_root(ALICE)
    assert root == tmp_path / "v4/files" / ALICE.hex()
    assert store.final_path(ALICE, "my docs/a b.txt") == root / "my docs" / "a b.txt"
    assert store.in_the_way(ALICE, "my docs/a b.txt") is None
    (root / "my docs" / "a b.txt").mkdir(parents=True)
    assert store.in_the_way(ALICE, "my docs/a b.txt") == "my docs/a b.txt is a folder on the server"


class _Filesystem:
    f_bavail = 1000
    f_frsize = 4096


def test_room_is_the_free_space_less_what_open_uploads_still_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = _Filesystem.f_bavail * _Filesystem.f_frsize
    asked: list[object] = []

    def statvfs(path: object) -> _Filesystem:
        asked.append(path)
        return _Filesystem()

    monkeypatch.setattr(os, "statvfs", statvfs)
    store = PartialStore(tmp_path)
    assert store.room(100) == free - 100
    assert asked == [store.partial_dir]  # the file system partial files land on
    first = store.open(ALICE, b"\x01" * 16, "a", 10 * CHUNK)
    first.write(1, _data(1))
    assert store.room(0) == free - 9 * CHUNK  # what it has yet to write is promised
    assert store.room(0, asking=first) == free  # but not to itself
    second = store.open(BOB, b"\x02" * 16, "b", 5)
    assert store.room(0, asking=second) == free - 9 * CHUNK
    assert store.room(0) == free - 9 * CHUNK - 5
    first.suspend()  # no longer held: nothing promised to it
    assert store.room(0) == free - 5
    second.discard()
    assert store.room(0) == free
    third = store.open(ALICE, b"\x03" * 16, "c", 7)
    third.write(1, b"1234567")
    third.finish()
    third.commit(store.client_root(ALICE), "c")
    assert store.room(0) == free


def test_an_upload_forgotten_while_open_is_promised_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", lambda path: _Filesystem())
    store = PartialStore(tmp_path)
    upload = store.open(ALICE, UPLOAD, "a", 3 * CHUNK)
    store.forget(upload.part)
    assert store.room(0) == _Filesystem.f_bavail * _Filesystem.f_frsize
