"""Version 4's resumable S3 uploads (``s3_unfinished``) in-process, against a fake S3
that keeps its multipart uploads in memory: the record written before the first part,
the tail kept on a break, a resume only when S3 and the tail hold exactly what was kept,
the leftovers, expiry and limits. (tests/s3 runs it in a server against SeaweedFS.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import types
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

pytest.importorskip("aiobotocore")  # the `s3` extra

from botocore.exceptions import ClientError

from eft_protocol.v4.file_digest import DigestAlgorithm
from eft_protocol.v4.records import CHUNK
from eft_server import s3_unfinished
from eft_server.partial_uploads import PartialQuota, UploadBusy
from eft_server.s3_settings import S3Location, S3Settings
from eft_server.s3_store import MIN_PART_SIZE, PartBuffer, S3Client, S3Failed
from eft_server.s3_unfinished import (
    S3UnfinishedUploads,
    _read_state,
    _read_tail,
    _remove_state,
    _write_durably,
)
from eft_server.storage import StorageError

SHA = int(DigestAlgorithm.SHA256)
ALICE = bytes.fromhex("a1")
BOB = bytes.fromhex("b2")
UP1, UP2, UP3 = b"\x01", b"\x02", b"\x03"


@pytest.fixture(autouse=True)
def _buffers_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads a test leaves open keep their buffers counted in ``PartBuffer.live``;
    the count is put back afterwards, for tests/s3 that expect it at 0."""
    monkeypatch.setattr(PartBuffer, "live", PartBuffer.live)


def refused(code: str) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, "Op")


class FakeS3:
    """Multipart uploads in memory; ``fail[operation]`` raises once."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, Exception] = {}
        #: (key, event): the start of that key waits for the event
        self.gate: tuple[str, asyncio.Event] | None = None
        self._ids = 0

    def __getattr__(self, operation: str) -> Any:
        async def call(**arguments: Any) -> Any:
            self.calls.append((operation, arguments))
            if operation in self.fail:
                raise self.fail.pop(operation)
            if operation == "create_multipart_upload" and self.gate is not None:
                key, gate = self.gate
                if arguments["Key"] == key:
                    await gate.wait()
            return getattr(self, "do_" + operation)(**arguments)

        return call

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == operation]

    def do_create_multipart_upload(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._ids += 1
        upload_id = f"s3-{self._ids}"
        self.uploads[upload_id] = {"Key": Key, "parts": {}}
        return {"UploadId": upload_id}

    def _upload(self, Key: str, UploadId: str) -> dict[str, Any]:
        if self.uploads.get(UploadId, {}).get("Key") != Key:  # S3 knows an upload by both
            raise refused("NoSuchUpload")
        return self.uploads[UploadId]

    def do_upload_part(
        self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: Any
    ) -> dict[str, Any]:
        self._upload(Key, UploadId)["parts"][PartNumber] = Body.read()
        return {"ETag": f"e{PartNumber}"}

    def do_list_parts(self, Bucket: str, Key: str, UploadId: str, **page: Any) -> dict[str, Any]:
        parts = self._upload(Key, UploadId)["parts"]
        listed = [
            {"PartNumber": n, "Size": len(body), "ETag": f"e{n}"}
            for n, body in sorted(parts.items())
        ]
        return {"Parts": listed}

    def do_abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        self._upload(Key, UploadId)
        del self.uploads[UploadId]
        return {}

    def do_complete_multipart_upload(
        self, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict[str, Any]
    ) -> dict[str, Any]:
        parts = self._upload(Key, UploadId)["parts"]
        numbers = [part["PartNumber"] for part in MultipartUpload["Parts"]]
        if any(part["ETag"] != f"e{part['PartNumber']}" for part in MultipartUpload["Parts"]):
            raise refused("InvalidPart")
        self.objects[Key] = b"".join(parts[n] for n in numbers)
        del self.uploads[UploadId]
        return {}


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    warning = info

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


def make_store(
    tmp_path: Path, quota: PartialQuota | None = None, drops: list[Any] | None = None
) -> tuple[S3UnfinishedUploads, FakeS3, Log]:
    settings = S3Settings(S3Location("bkt", "pre"), None, "us-east-1", "id", "secret")
    client = S3Client(settings)
    s3 = FakeS3()
    client.api = s3
    on_drop = None if drops is None else (lambda reason, size: drops.append((reason, size)))
    store = S3UnfinishedUploads(client, tmp_path, quota, on_drop)
    log = Log()
    store.log = log
    client.log = log
    return store, s3, log


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def chunk(n: int) -> bytes:
    return bytes([n]) * CHUNK


def test_a_new_upload_is_recorded_before_its_first_part(tmp_path: Path) -> None:
    store, s3, log = make_store(tmp_path)
    assert store.state_dir == tmp_path / "v4" / "partial-s3" and store.state_dir.is_dir()
    assert store.prefix == "pre/v4/files/"
    assert store.local_files_dir is None

    async def go() -> Any:
        upload = await store.open(ALICE, UP1, "f.bin", 3 * CHUNK, SHA)
        assert (upload.durable_chunks, upload.written_chunks, upload.size) == (0, 0, 3 * CHUNK)
        state = json.loads((store.state_dir / "a1" / "01.json").read_text())
        assert state == {
            "name": "f.bin",
            "size": 3 * CHUNK,
            "key": "pre/v4/files/a1/f.bin",
            "upload_id": "s3-1",
            "part_size": MIN_PART_SIZE,
            "digest_algorithm": SHA,
        }
        assert store.usage() == (1, 0)
        for index in (1, 2, 3):
            await upload.write(index, chunk(index))
        assert upload.written_chunks == 3 and upload.received == 3 * CHUNK
        assert store.usage() == (1, 3 * CHUNK)
        digest = await upload.finish()
        return digest, await upload.commit(ALICE, "f.bin")

    digest, location = run(go())
    data = chunk(1) + chunk(2) + chunk(3)
    assert digest == hashlib.sha256(data).digest()
    assert location == "s3://bkt/pre/v4/files/a1/f.bin"
    assert s3.objects == {"pre/v4/files/a1/f.bin": data}
    assert not list(store.state_dir.glob("*/*"))
    assert store.usage() == (0, 0)
    assert log.named("s3_upload_started") == [{"upload": "a1/01", "s3_upload_id": "s3-1"}]


def test_measure_has_no_limit(tmp_path: Path) -> None:
    store, _s3, _log = make_store(tmp_path)
    assert run(store.measure(object(), ALICE, "f", 0)) == (2**63 - 1, None)


def test_an_upload_open_elsewhere_is_busy_and_a_failed_open_frees_it(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)

    async def go() -> None:
        await store.open(ALICE, UP1, "f", CHUNK, SHA)
        with pytest.raises(UploadBusy, match=r"^this upload is still open on another connection$"):
            await store.open(ALICE, UP1, "f", CHUNK, SHA)
        s3.fail["create_multipart_upload"] = refused("SlowDown")
        with pytest.raises(S3Failed):
            await store.open(ALICE, UP2, "g", CHUNK, SHA)
        await store.open(ALICE, UP2, "g", CHUNK, SHA)  # free again

    run(go())


def break_after(tmp_path: Path, chunks: int, size: int, **kwargs: Any) -> Any:
    """A store with one upload of ``size`` bytes broken after ``chunks`` chunks."""
    store, s3, log = make_store(tmp_path, **kwargs)

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f.bin", size, SHA)
        for index in range(1, chunks + 1):
            await upload.write(index, chunk(index))
        await upload.suspend()
        await upload.suspend()  # twice: nothing more

    run(go())
    return store, s3, log


def test_a_break_keeps_the_tail_and_a_resume_continues_the_same_upload(tmp_path: Path) -> None:
    live = PartBuffer.live
    store, s3, log = break_after(tmp_path, 6, 8 * CHUNK)
    assert PartBuffer.live == live
    tail = store.state_dir / "a1" / "01.tail"
    assert tail.read_bytes() == chunk(6)  # parts of 5 MiB: the sixth is the tail
    assert [len(part) for part in s3.uploads["s3-1"]["parts"].values()] == [MIN_PART_SIZE]
    assert store.usage() == (1, 6 * CHUNK)

    async def resume() -> Any:
        upload = await store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)
        assert (upload.durable_chunks, upload.written_chunks) == (6, 6)
        assert type(upload.durable_chunks) is int and upload.size == 8 * CHUNK
        assert upload.received == 6 * CHUNK
        for index in (7, 8):
            await upload.write(index, chunk(index))
        digest = await upload.finish()
        return digest, await upload.commit(ALICE, "f.bin")

    digest, _location = run(resume())
    data = b"".join(chunk(n) for n in range(1, 9))
    assert digest == hashlib.sha256(data).digest()
    assert s3.objects["pre/v4/files/a1/f.bin"] == data
    assert len(s3.named("create_multipart_upload")) == 1
    assert log.named("s3_upload_resumed") == [
        {"upload": "a1/01", "s3_upload_id": "s3-1", "parts": 1, "tail_bytes": CHUNK}
    ]
    assert not list(store.state_dir.glob("*/*"))


def test_a_resume_without_a_tail_file(tmp_path: Path) -> None:
    store, _s3, _log = break_after(tmp_path, 5, 8 * CHUNK)
    assert (store.state_dir / "a1" / "01.tail").read_bytes() == b""
    upload = run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA))
    assert upload.durable_chunks == 5
    (store.state_dir / "a1" / "01.tail").unlink()
    run(upload.suspend())
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 5


@pytest.mark.parametrize(
    ("name", "size", "algorithm"),
    [
        ("other.bin", 8 * CHUNK, SHA),
        ("f.bin", 9 * CHUNK, SHA),
        ("f.bin", 8 * CHUNK, int(DigestAlgorithm.BLAKE3)),
    ],
)
def test_another_file_under_the_same_id_starts_again(
    tmp_path: Path, name: str, size: int, algorithm: int
) -> None:
    store, s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    upload = run(store.open(ALICE, UP1, name, size, algorithm))
    assert upload.durable_chunks == 0
    assert list(s3.uploads) == ["s3-2"]  # the first aborted
    assert s3.named("abort_multipart_upload")[0]["UploadId"] == "s3-1"
    state = json.loads((store.state_dir / "a1" / "01.json").read_text())
    assert (state["name"], state["size"], state["upload_id"]) == (name, size, "s3-2")
    assert not (store.state_dir / "a1" / "01.tail").exists()


def test_a_record_without_an_algorithm_is_blake3(tmp_path: Path) -> None:
    store, _s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    path = store.state_dir / "a1" / "01.json"
    state = json.loads(path.read_text())
    del state["digest_algorithm"]
    path.write_text(json.dumps(state))
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 0
    store2, _s3, _log = break_after(tmp_path / "2", 6, 8 * CHUNK)
    path = store2.state_dir / "a1" / "01.json"
    state = json.loads(path.read_text())
    del state["digest_algorithm"]
    path.write_text(json.dumps(state))
    blake3 = int(DigestAlgorithm.BLAKE3)
    assert run(store2.open(ALICE, UP1, "f.bin", 8 * CHUNK, blake3)).durable_chunks == 6


def test_an_upload_aborted_behind_our_back_starts_again(tmp_path: Path) -> None:
    store, s3, log = break_after(tmp_path, 6, 8 * CHUNK)
    del s3.uploads["s3-1"]  # a lifecycle rule
    upload = run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA))
    assert upload.durable_chunks == 0 and list(s3.uploads) == ["s3-2"]
    [warning] = log.named("s3_resume_impossible")
    assert warning["upload"] == "a1/01" and "NoSuchUpload" in warning["error"]


def test_s3_away_at_resume_keeps_the_upload_for_later(tmp_path: Path) -> None:
    store, s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    s3.fail["list_parts"] = refused("InternalError")
    with pytest.raises(S3Failed):
        run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA))
    assert store.usage() == (1, 6 * CHUNK)
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 6


def test_parts_that_differ_start_again(tmp_path: Path) -> None:
    store, s3, log = break_after(tmp_path, 6, 8 * CHUNK)
    s3.uploads["s3-1"]["parts"][1] = b"short"
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 0
    assert log.named("s3_resume_impossible") == [{"upload": "a1/01", "error": "parts differ"}]

    store, s3, log = break_after(tmp_path / "2", 6, 8 * CHUNK)
    s3.uploads["s3-1"]["parts"] = {2: bytes(MIN_PART_SIZE)}  # numbered from 2
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 0


def test_a_tail_that_differs_starts_again(tmp_path: Path) -> None:
    store, _s3, log = break_after(tmp_path, 6, 8 * CHUNK)
    (store.state_dir / "a1" / "01.tail").write_bytes(b"x" * CHUNK * 2)
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 0
    assert log.named("s3_resume_impossible") == [{"upload": "a1/01", "error": "kept bytes differ"}]


def test_an_unreadable_tail_starts_again(tmp_path: Path) -> None:
    store, _s3, log = break_after(tmp_path, 6, 8 * CHUNK)
    tail = store.state_dir / "a1" / "01.tail"
    tail.unlink()
    tail.mkdir()
    assert run(store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)).durable_chunks == 0
    [warning] = log.named("s3_resume_impossible")
    assert warning["upload"] == "a1/01" and "01.tail" in warning["error"]


def test_the_last_chunk_is_always_sent_again(tmp_path: Path) -> None:
    # 6 chunks of a 6-chunk file: all received, but the last must come again
    store, _s3, _log = break_after(tmp_path, 6, 6 * CHUNK)
    assert run(store.open(ALICE, UP1, "f.bin", 6 * CHUNK, SHA)).durable_chunks == 0
    # 6 of a 7-chunk file: resumable
    store, _s3, _log = break_after(tmp_path / "2", 6, 7 * CHUNK)
    assert run(store.open(ALICE, UP1, "f.bin", 7 * CHUNK, SHA)).durable_chunks == 6


def test_a_break_mid_part_discards_the_upload(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)
        for index in range(1, 5):
            await upload.write(index, chunk(index))
        s3.fail["upload_part"] = refused("InternalError")
        with pytest.raises(S3Failed):
            await upload.write(5, chunk(5))
        await upload.suspend()

    run(go())
    assert s3.uploads == {} and store.usage() == (0, 0)
    assert not list(store.state_dir.glob("*/*"))


def test_a_tail_that_cannot_be_kept_discards_the_upload(tmp_path: Path) -> None:
    store, s3, log = make_store(tmp_path)

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f.bin", 8 * CHUNK, SHA)
        await upload.write(1, chunk(1))
        (store.state_dir / "a1" / "01.tail.tmp").mkdir()  # the tail's temp file cannot be
        await upload.suspend()

    run(go())
    assert s3.uploads == {} and store.usage() == (0, 0)
    [warning] = log.named("s3_tail_not_kept")
    assert warning["upload"] == "a1/01" and "01.tail.tmp" in warning["error"]


def test_a_record_that_cannot_be_written_aborts_the_start(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)
    (store.state_dir / "a1" / "01.json.tmp").mkdir(parents=True)
    with pytest.raises(StorageError, match=r"^cannot record the upload: "):
        run(store.open(ALICE, UP1, "f.bin", CHUNK, SHA))
    assert s3.uploads == {} and len(s3.named("abort_multipart_upload")) == 1


def test_leftovers_of_a_previous_run_are_aborted_at_start(tmp_path: Path) -> None:
    store, s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    run(store.open(BOB, UP2, "g", 8 * CHUNK, SHA))
    (store.state_dir / "a1" / "junk.json").write_text("not json")
    restarted, _s3, restarted_log = make_store(tmp_path)
    restarted.client.api = s3
    s3.fail["abort_multipart_upload"] = refused("InternalError")  # the first: kept
    assert run(restarted.remove_leftovers()) == 2
    [failed] = restarted_log.named("s3_abort_failed")
    assert failed["key"] in ("pre/v4/files/a1/f.bin", "pre/v4/files/b2/g")
    assert failed["error"].startswith("S3 abort_multipart_upload failed")
    assert set(failed) == {"key", "error"}
    assert len(list(restarted.state_dir.glob("*/*.json"))) == 1
    assert len(s3.uploads) == 1
    assert run(restarted.remove_leftovers()) == 1
    assert s3.uploads == {} and not list(restarted.state_dir.glob("*/*"))


def test_an_upload_gone_from_s3_is_a_leftover_removed(tmp_path: Path) -> None:
    store, s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    s3.uploads.clear()
    assert run(store.remove_leftovers()) == 1
    assert not list(store.state_dir.glob("*/*"))


def test_broken_uploads_expire(tmp_path: Path) -> None:
    store, s3, _log = break_after(tmp_path, 6, 8 * CHUNK)
    assert run(store.remove_expired(3600)) == 0
    assert store.usage() == (1, 6 * CHUNK)
    assert run(store.remove_expired(-60)) == 1  # suspended before now + 60 s
    assert store.usage() == (0, 0) and s3.uploads == {}
    assert not list(store.state_dir.glob("*/*"))


def suspend_each(store: S3UnfinishedUploads, uploads: list[tuple[bytes, bytes, int]]) -> None:
    async def go() -> None:
        for client, upload_id, chunks in uploads:
            upload = await store.open(client, upload_id, "f", 8 * CHUNK, SHA)
            for index in range(1, chunks + 1):
                await upload.write(index, chunk(index))
            await upload.suspend()

    run(go())


@pytest.mark.parametrize(
    ("quota", "dropped", "reason"),
    [
        (PartialQuota(uploads_per_client=2), ["a1/01"], "client_uploads"),
        (PartialQuota(bytes_per_client=CHUNK), ["a1/01", "a1/02"], "client_bytes"),
        (PartialQuota(uploads=2), ["a1/01"], "server_uploads"),
        (PartialQuota(bytes=CHUNK), ["a1/01", "a1/02"], "server_bytes"),
    ],
)
def test_the_oldest_broken_uploads_go_beyond_the_limits(
    tmp_path: Path, quota: PartialQuota, dropped: list[str], reason: str
) -> None:
    drops: list[tuple[str, int]] = []
    store, s3, log = make_store(tmp_path, quota, drops)
    suspend_each(store, [(ALICE, UP1, 1), (ALICE, UP2, 1), (ALICE, UP3, 1)])
    assert drops == [(reason, CHUNK)] * len(dropped)
    assert [w["upload"] for w in log.named("partial_upload_dropped")] == dropped
    assert all(
        w == {"upload": u, "bytes": CHUNK, "reason": reason}
        for w, u in zip(log.named("partial_upload_dropped"), dropped, strict=True)
    )
    left = 3 - len(dropped)
    assert store.usage() == (left, left * CHUNK)
    assert len(s3.uploads) == left
    assert len(list(store.state_dir.glob("*/*.json"))) == left


def test_limits_per_client_count_only_that_client(tmp_path: Path) -> None:
    store, _s3, _log = make_store(tmp_path, PartialQuota(uploads_per_client=1), [])
    suspend_each(store, [(ALICE, UP1, 1), (BOB, UP1, 1)])
    assert store.usage() == (2, 2 * CHUNK)
    run(store.enforce_quota())  # every client
    assert store.usage() == (2, 2 * CHUNK)
    store.quota = PartialQuota(uploads_per_client=0)
    run(store.enforce_quota("b2"))
    assert set(store._suspended) == {"a1/01"}
    run(store.enforce_quota())
    assert store.usage() == (0, 0)


def test_an_open_upload_counts_but_is_not_dropped(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    store, _s3, _log = make_store(tmp_path, PartialQuota(uploads_per_client=1), drops)
    suspend_each(store, [(ALICE, UP1, 1)])

    async def go() -> None:
        upload = await store.open(ALICE, UP2, "g", 8 * CHUNK, SHA)  # drops a1/01
        await upload.write(1, chunk(1))
        assert store.usage() == (1, CHUNK)
        await store.enforce_quota("a1")
        assert store.usage() == (1, CHUNK)

    run(go())
    assert drops == [("client_uploads", CHUNK)]


def test_the_upload_just_suspended_is_spared(tmp_path: Path) -> None:
    store, _s3, _log = make_store(tmp_path, PartialQuota(uploads_per_client=0), [])
    suspend_each(store, [(ALICE, UP1, 1)])
    assert set(store._suspended) == {"a1/01"}
    run(store.enforce_quota("a1", keep="a1/01"))
    assert set(store._suspended) == {"a1/01"}


def test_a_suspended_upload_discarded_is_forgotten(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f", 8 * CHUNK, SHA)
        await upload.write(1, chunk(1))
        await upload.suspend()
        assert store.usage() == (1, CHUNK)
        await upload.discard()

    run(go())
    assert store.usage() == (0, 0) and s3.uploads == {}


def test_expiry_is_strictly_older_than_the_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_unfinished, "time", types.SimpleNamespace(time=lambda: 1000.0))
    store, _s3, _log = break_after(tmp_path, 1, 8 * CHUNK)  # suspended at 1000.0
    assert run(store.remove_expired(0)) == 0  # idle 0 s is not more than 0 s
    assert run(store.remove_expired(-0.5)) == 1


def test_discard_aborts_and_forgets(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f", CHUNK, SHA)
        await upload.discard()

    run(go())
    assert s3.uploads == {} and store._open == {}
    assert not list(store.state_dir.glob("*/*"))


# --- the files ---------------------------------------------------------------------------


def test_state_files_are_read_whole_or_not_at_all(tmp_path: Path) -> None:
    base = tmp_path / "u"
    assert _read_state(base) is None
    whole = {"name": "n", "size": 1, "key": "k", "upload_id": "u", "part_size": 5}
    for broken in ("[1]", "{", json.dumps({k: v for k, v in whole.items() if k != "key"})):
        base.with_suffix(".json").write_text(broken)
        assert _read_state(base) is None
    base.with_suffix(".json").write_text(json.dumps(whole))
    assert _read_state(base) == whole
    assert _read_tail(tmp_path / "none.tail") == b""


def test_writes_are_whole_and_removals_complete(tmp_path: Path) -> None:
    base = tmp_path / "deep" / "u"
    _write_durably(base.with_suffix(".json"), "{}")
    _write_durably(base.with_suffix(".tail"), b"\x00\x01")
    assert base.with_suffix(".json").read_text() == "{}"
    assert base.with_suffix(".tail").read_bytes() == b"\x00\x01"
    assert (base.with_suffix(".json").stat().st_mode & 0o777) == 0o600
    for suffix in (".json.tmp", ".tail.tmp"):
        base.with_suffix(suffix).write_text("x")
    _remove_state(base)
    assert list(base.parent.iterdir()) == []
    _remove_state(base)  # again: nothing


def test_the_store_logs_through_its_own_logger(tmp_path: Path) -> None:
    store, _s3, _log = make_store(tmp_path)
    store.log = S3UnfinishedUploads(store.client, tmp_path).log  # as built: structlog's
    with structlog.testing.capture_logs() as logged:
        run(store.open(ALICE, UP1, "f", CHUNK, SHA))
    assert [entry["event"] for entry in logged] == ["s3_upload_started"]


def test_an_upload_still_opening_is_not_counted(tmp_path: Path) -> None:
    store, s3, _log = make_store(tmp_path)
    gate = asyncio.Event()

    async def go() -> None:
        slow = asyncio.create_task(store.open(ALICE, UP1, "f", CHUNK, SHA))
        while "a1/01" not in store._open:  # reserved, awaiting S3
            await asyncio.sleep(0)
        assert store.usage() == (0, 0)
        await store.open(BOB, UP1, "g", CHUNK, SHA)  # enforces the limits meanwhile
        await store.enforce_quota()
        gate.set()
        await slow

    s3.gate = ("pre/v4/files/a1/f", gate)
    run(go())
    assert store.usage() == (2, 0)


def test_opening_or_suspending_enforces_only_that_clients_limits(tmp_path: Path) -> None:
    store, _s3, _log = make_store(tmp_path, None, [])
    suspend_each(store, [(BOB, UP1, 1)])
    store.quota = PartialQuota(uploads_per_client=0)  # Bob is over it, and idle

    async def go() -> None:
        upload = await store.open(ALICE, UP1, "f", 8 * CHUNK, SHA)
        assert "b2/01" in store._suspended
        await upload.write(1, chunk(1))
        await upload.suspend()  # Alice's own is spared
        assert set(store._suspended) == {"b2/01", "a1/01"}

    run(go())


@pytest.mark.parametrize(
    "quota",
    [PartialQuota(bytes_per_client=2 * CHUNK), PartialQuota(bytes=2 * CHUNK)],
)
def test_a_limit_reached_exactly_drops_nothing(tmp_path: Path, quota: PartialQuota) -> None:
    drops: list[tuple[str, int]] = []
    store, _s3, _log = make_store(tmp_path, quota, drops)
    suspend_each(store, [(ALICE, UP1, 1), (ALICE, UP2, 1)])
    assert drops == [] and store.usage() == (2, 2 * CHUNK)


@pytest.mark.parametrize(
    ("quota", "reason"),
    [
        (PartialQuota(uploads_per_client=2, bytes_per_client=CHUNK), "client_bytes"),
        (PartialQuota(uploads=2, bytes=CHUNK), "server_bytes"),
    ],
)
def test_bytes_over_at_the_upload_limit_is_a_bytes_drop(
    tmp_path: Path, quota: PartialQuota, reason: str
) -> None:
    drops: list[tuple[str, int]] = []
    store, _s3, _log = make_store(tmp_path, quota, drops)
    suspend_each(store, [(ALICE, UP1, 1), (ALICE, UP2, 1)])
    assert drops == [(reason, CHUNK)]


@pytest.mark.parametrize(
    ("quota", "reason"),
    [
        (PartialQuota(uploads_per_client=1), "client_uploads"),
        (PartialQuota(bytes_per_client=CHUNK), "client_bytes"),
        (PartialQuota(uploads=1), "server_uploads"),
        (PartialQuota(bytes=CHUNK), "server_bytes"),
    ],
)
def test_limits_lowered_drop_the_oldest_until_they_hold(
    tmp_path: Path, quota: PartialQuota, reason: str
) -> None:
    drops: list[tuple[str, int]] = []
    store, _s3, _log = make_store(tmp_path, None, drops)
    suspend_each(store, [(ALICE, UP1, 1), (ALICE, UP2, 1), (ALICE, UP3, 1)])
    store.quota = quota
    run(store.enforce_quota("a1" if reason.startswith("client") else None))
    assert drops == [(reason, CHUNK)] * 2
    assert set(store._suspended) == {"a1/03"}
