"""The version-4 connection's effects (``ConnectionV4._apply_one``) and its end, in this
process over loopback (tests/unit/in_process_server.py): what the sixth mutation round
found untested — a chunk's plaintext buffer kept until its writer thread is done with
it; a streamed file opened as such (no progress record, nothing left behind); the
deadline between frames as the session's state says (handshake, idle, mid-upload); the
linger after an error answer, bounded in bytes and in time, quiet however it ends; a
close chosen by the session with nothing to linger for ending at once; STREAM offered
only on the local store of unfinished uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer_v4 as t4
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_protocol.codes import ResponseCode
from eft_protocol.deadlines import Deadline
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import handshake as hs
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest
from eft_server.connection_v4 import ConnectionV4
from eft_server.file_store import LocalUnfinishedUploads
from eft_server.frame_reader import LentBuffer, RecordBuffers
from eft_server.partial_uploads import PartialStore, PartialUpload
from tests.v4.wire_client import WAIT, WireV4, new_upload_id

from . import in_process_server
from .in_process_server import captured_logs, events, make_context, serve_one

ACK, RECEIVED, ERROR = ResponseCode.ACKNOWLEDGED, ResponseCode.FILE_RECEIVED, 1607
DATA = random.Random(23).randbytes(2 * rec.CHUNK - 5)  # two chunks, each a record buffer's


def test_a_chunk_s_plaintext_is_not_given_back_while_its_writer_thread_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One plaintext buffer in all: the first chunk's writer thread is held until the
    second record asks for a buffer. Given back before its write ended, the buffer would
    take the second chunk's plaintext under the first one's write."""
    context = make_context(tmp_path / "data")
    context.record_buffers = RecordBuffers(1, v4.MAX_RECORD_PAYLOAD)
    plaintexts = context.record_buffers.plaintexts
    assert plaintexts is not None
    asked = threading.Event()  # the next record waits for a plaintext buffer
    writing = threading.Event()  # the first chunk's writer thread is inside its write
    early: list[bool] = []  # a lent buffer given back while that write was held
    write_chunk = PartialUpload._write_chunk
    give_back = LentBuffer.give_back
    take = plaintexts.take

    calls: list[int] = []

    def held_write(self: PartialUpload, data: Any) -> None:
        calls.append(len(data))
        if len(calls) == 1:  # the first chunk
            writing.set()
            asked.wait(WAIT)  # a bound: set by one of the two paths below
            writing.clear()
        write_chunk(self, data)

    def watched_give_back(self: LentBuffer) -> None:
        if writing.is_set():
            early.append(True)
            asked.set()  # let the writer go on: the test has seen enough
        give_back(self)

    async def watched_take(owner: object = None) -> memoryview:
        asked.set()
        return await take(owner)

    monkeypatch.setattr(PartialUpload, "_write_chunk", held_write)
    monkeypatch.setattr(LentBuffer, "give_back", watched_give_back)
    plaintexts.take = watched_take  # type: ignore[method-assign]

    def client(address: str) -> list[tuple[int, bytes]]:
        peer = WireV4(address)
        peer.register("lent")
        answers = [peer.meta(1, len(DATA), new_upload_id(), "l.bin")]
        peer.chunks(1, DATA)
        answers.append(peer.response())
        peer.close()
        return answers

    answers, _ = serve_one(context, client)
    assert early == []
    assert asked.is_set(), "the second record waited for the buffer the first one held"
    assert answers == [
        (ACK, rec.encode_resume(1, 1)),
        (RECEIVED, rec.encode_received(1, len(DATA), file_digest(DATA).digest())),
    ]


def _stream(tmp_path: Path, context: Any, files: list[Path], name: str) -> Exception | None:
    """The version-4 client's whole run (STREAM, the wide window) against ``context``;
    the error it ended with, if any (a file refused)."""

    def client(address: str) -> Exception | None:
        host, _, port = address.rpartition(":")
        settings = ClientSettings(host, int(port), name, tmp_path / "client")
        try:
            asyncio.run(t4.run_v4(settings, files, Reporter()))
        except Exception as exc:
            return exc
        return None

    return serve_one(context, client)[0]


def _sources(tmp_path: Path, sizes: dict[str, int]) -> list[Path]:
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    files = []
    for n, (name, size) in enumerate(sizes.items()):
        path = sources / name
        path.write_bytes(random.Random(n).randbytes(size))
        files.append(path)
    return files


def _stored(tmp_path: Path) -> dict[str, bytes]:
    """What the server stored, by name (a path under the client's folder)."""
    files = tmp_path / "data" / "v4" / "files"
    return {
        "/".join(path.relative_to(files).parts[1:]): path.read_bytes()
        for path in files.rglob("*")
        if path.is_file()
    }


def test_streamed_files_are_opened_as_such_and_leave_nothing_behind(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {"s0.bin": 1000, "s1.bin": 1001, "s2.bin": 1002})
    assert _stream(tmp_path, context, files, "quinn") is None
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in files}
    # fresh and never resumable: no progress record (``.json``) was written, none is left
    partial = tmp_path / "data" / "v4" / "partial"
    assert [path for path in partial.rglob("*") if not path.is_dir()] == []


def test_a_streamed_file_is_measured_against_the_room_left_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free space frozen (the machine's others write too): with room for 1,500
    bytes, a file of 1,000 is taken (its own unwritten bytes not counted against it)
    and one of 2,000 refused."""
    free = os.statvfs(tmp_path)
    monkeypatch.setattr(os, "statvfs", lambda path: free)
    space = PartialStore(tmp_path / "probe").room(0)
    context = make_context(tmp_path / "data", keep_free=space - 1500)
    files = _sources(tmp_path, {"fits.bin": 1000, "big.bin": 2000})
    failed = _stream(tmp_path, context, files, "rita")
    assert failed is not None, "a refused file fails the run"
    assert _stored(tmp_path) == {"fits.bin": files[0].read_bytes()}


def test_a_streamed_sha256_file_is_hashed_and_recorded_with_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata names the digest's algorithm (a client may send SHA-256): the server
    hashes the file with it and records it under its name, not the default BLAKE3's."""
    begin = ClientSessionV4.begin_stream_file

    def sha256_stream(self: ClientSessionV4, *args: Any, **kwargs: Any) -> bytes:
        return begin(self, *args, **kwargs, digest_algorithm=DigestAlgorithm.SHA256)

    monkeypatch.setattr(ClientSessionV4, "begin_stream_file", sha256_stream)
    monkeypatch.setattr(t4, "file_digest", hashlib.sha256)
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {"h0.bin": 700, "h1.bin": 0})
    assert _stream(tmp_path, context, files, "sven") is None
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in files}
    records = sorted(context.registry.files_v4(), key=lambda record: record.file_name)
    assert [(r.file_name, r.digest, r.algorithm) for r in records] == [
        (path.name, hashlib.sha256(path.read_bytes()).digest(), "sha256") for path in files
    ]


def test_a_streamed_file_whose_name_is_a_folder_is_refused_as_a_name(tmp_path: Path) -> None:
    """``d`` is a folder of this client's files already: a file ``d`` is refused before
    its data (error 2, the name), not accepted and then failed at its commit."""
    context = make_context(tmp_path / "data")
    folder = tmp_path / "tree" / "d"
    folder.mkdir(parents=True)
    (folder / "x.bin").write_bytes(b"x" * 10)
    assert _stream(tmp_path, context, [folder], "tess") is None
    assert _stored(tmp_path) == {"d/x.bin": b"x" * 10}
    blocked = _sources(tmp_path, {"d": 20})
    with captured_logs() as logs:
        failed = _stream(tmp_path, context, blocked, "tess")
    assert str(failed) == "server error 2: d is a folder on the server"
    assert _stored(tmp_path) == {"d/x.bin": b"x" * 10}
    assert "storage_failed" not in events(logs)


def test_an_upload_resumed_under_another_name_starts_over(tmp_path: Path) -> None:
    """A resumable upload is kept under its name: the same upload id and size with
    another name is another file, sent from its first chunk."""
    context = make_context(tmp_path / "data")
    key = KeyPair.generate()
    upload_id = new_upload_id()

    def cut(address: str) -> None:
        peer = WireV4(address, key)
        peer.register("uma")
        assert peer.meta(1, len(DATA), upload_id, "first.bin")[0] == ACK
        peer.chunks(1, DATA, 1, 1)  # the first chunk, then the connection ends
        peer.close()

    def again(name: str) -> Callable[[str], tuple[int, bytes]]:
        def resume(address: str) -> tuple[int, bytes]:
            peer = WireV4(address, key)
            peer.login("uma")
            answer = peer.meta(1, len(DATA), upload_id, name)
            peer.close()
            return answer

        return resume

    serve_one(context, cut)
    assert serve_one(context, again("second.bin"))[0] == (ACK, rec.encode_resume(1, 1))
    serve_one(context, cut)
    assert serve_one(context, again("first.bin"))[0] == (ACK, rec.encode_resume(1, 2))


def test_a_resumable_upload_is_measured_against_the_room_left_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a streamed file: its own unwritten bytes are not counted against it."""
    free = os.statvfs(tmp_path)
    monkeypatch.setattr(os, "statvfs", lambda path: free)
    space = PartialStore(tmp_path / "probe").room(0)
    context = make_context(tmp_path / "data", keep_free=space - len(DATA) * 3 // 2)

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.register("vera")
        answer = peer.meta(1, len(DATA), new_upload_id(), "r.bin")
        peer.close()
        return answer

    answer, _ = serve_one(context, client)
    assert answer == (ACK, rec.encode_resume(1, 1))


def test_an_empty_folder_blocked_by_a_file_is_refused_with_why(tmp_path: Path) -> None:
    """A folder to make (STREAM's DIRECTORY) where the client has a file: error 2 with
    the reason, the connection kept (not a storage failure)."""
    context = make_context(tmp_path / "data")
    assert _stream(tmp_path, context, _sources(tmp_path, {"e": 5}), "wade") is None
    empty = tmp_path / "tree" / "e"
    empty.mkdir(parents=True)
    with captured_logs() as logs:
        failed = _stream(tmp_path, context, [empty], "wade")
    assert str(failed) == "server error 2: e is not a folder on the server"
    assert "storage_failed" not in events(logs)
    assert _stored(tmp_path) == {"e": (tmp_path / "sources" / "e").read_bytes()}


def test_a_received_file_s_line_says_how_long_it_took(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register("xena")
        assert peer.meta(1, len(DATA), new_upload_id(), "t.bin")[0] == ACK
        peer.chunks(1, DATA)
        assert peer.response()[0] == RECEIVED
        peer.close()

    before = time.time()
    with captured_logs() as logs:
        serve_one(context, client)
    after = time.time()
    (received,) = [e for e in logs if e["event"] == "transfer" and e["outcome"] == "received"]
    assert 0 <= received["duration"] <= after - before, "from its metadata to its last chunk"


class _AskedBack:
    """An unfinished upload another replica may ask for (as the S3 store's shared
    uploads are): ``on_taken`` is called when it does, here on the first chunk."""

    def __init__(self, upload: Any) -> None:
        self._upload = upload
        self.durable_chunks = upload.durable_chunks
        self.on_taken: Callable[[], None] | None = None

    async def write(self, index: int, data: Any) -> None:
        assert self.on_taken is not None, "the connection listens for it"
        self.on_taken()
        await self._upload.write(index, data)

    async def finish(self) -> bytes:
        digest: bytes = await self._upload.finish()
        return digest

    async def commit(self, client_id: bytes, name: str) -> str:
        location: str = await self._upload.commit(client_id, name)
        return location

    async def suspend(self) -> None:
        await self._upload.suspend()

    async def discard(self) -> None:
        await self._upload.discard()


class _SharedStore:
    """A store of unfinished uploads that is not the local one (as the S3 store is not),
    its uploads kept on the local disk underneath."""

    def __init__(self, local: LocalUnfinishedUploads) -> None:
        self._local = local
        self.local_files_dir = local.local_files_dir

    async def open(self, *args: Any) -> _AskedBack:
        return _AskedBack(await self._local.open(*args))

    async def measure(
        self, upload: Any, client_id: bytes, name: str, keep_free: int
    ) -> tuple[int, str | None]:
        return await self._local.measure(upload._upload, client_id, name, keep_free)

    async def remove_leftovers(self) -> int:
        return await self._local.remove_leftovers()

    async def remove_expired(self, ttl: float) -> int:
        return await self._local.remove_expired(ttl)

    def usage(self) -> tuple[int, int]:
        return self._local.usage()


def test_an_upload_asked_for_by_another_replica_cuts_this_connection(tmp_path: Path) -> None:
    """On a store shared by replicas: STREAM is not offered (one multipart upload per
    file there), and when another replica takes the upload this connection writes (its
    client is there now), this connection is cut and says why."""
    context = make_context(tmp_path / "data")
    local = context.partials
    assert isinstance(local, LocalUnfinishedUploads)
    context.partials = _SharedStore(local)  # type: ignore[assignment]

    def client(address: str) -> tuple[int, bool]:
        peer = WireV4(address)
        peer.register("yves")
        assert peer.server_hello is not None
        features = peer.server_hello.features
        assert peer.meta(1, len(DATA), new_upload_id(), "a.bin")[0] == ACK
        try:
            peer.chunks(1, DATA)
        except ConnectionError:
            return features, True  # cut while sending
        closed = peer.closed_by_server()
        peer.close()
        return features, closed

    with captured_logs() as logs:
        (features, cut), _ = serve_one(context, client)
    assert not features & hs.FEATURE_STREAM
    assert cut
    taken = [e for e in logs if e["event"] == "upload_taken_elsewhere"]
    assert [e["log_level"] for e in taken] == ["info"]


def test_the_wait_between_frames_is_the_handshake_s_then_idle_or_mid_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the key exchange the handshake's deadline applies; after it, the idle
    timeout between requests and the read timeout inside an upload (chunks due)."""
    kinds: list[str] = []

    class Watched(ConnectionV4):
        def _deadline(self, now: float) -> Deadline:
            deadline = super()._deadline(now)
            if self._header is None:  # between frames (a payload's is always "read")
                kinds.append(deadline.kind)
            return deadline

    monkeypatch.setattr(in_process_server, "ConnectionV4", Watched)
    context = make_context(
        tmp_path / "data", handshake_timeout=100.0, read_timeout=500.0, idle_timeout=1000.0
    )

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register("zoe")
        assert peer.meta(1, len(DATA), new_upload_id(), "k.bin")[0] == ACK
        peer.chunks(1, DATA, 1, 1)
        peer.chunks(1, DATA, 2)
        assert peer.response()[0] == RECEIVED
        peer.close()

    serve_one(context, client)
    # message 3 due; the metadata; chunk 1, then chunk 2 due; the verdict (or the end)
    assert kinds == ["handshake", "idle", "read", "read", "idle"]
