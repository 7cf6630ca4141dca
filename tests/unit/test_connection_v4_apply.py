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
import contextlib
import errno
import hashlib
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer_v4 as t4
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.deadlines import Deadline
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import handshake as hs
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest
from eft_server import connection_v4
from eft_server.connection_v4 import ConnectionV4
from eft_server.file_store import LocalUnfinishedUpload, LocalUnfinishedUploads
from eft_server.frame_reader import FrameReader, LentBuffer, RecordBuffers
from eft_server.partial_uploads import PartialStore, PartialUpload
from eft_server.storage import StorageError
from tests.v4.wire_client import WAIT, WireV4, meta_plaintext, new_upload_id

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
        # retries=0: a connection the server breaks fails the run, not tried again
        settings = ClientSettings(host, int(port), name, tmp_path / "client", retries=0)
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
    # the last one larger than a reader's own buffer: a plaintext buffer is lent for it
    files = _sources(tmp_path, {"s0.bin": 1000, "s1.bin": 1001, "s2.bin": 100_000})
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    """The metadata names the digest's algorithm (a client may send SHA-256): the server
    hashes the file with it and records it under its name, not the default BLAKE3's."""
    monkeypatch.setenv("EFT_PACK", "0")  # STREAM's own records, not PACK's
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
    assert watched.failure is None


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
        if self._upload.partial.name == "taken.bin":
            self.on_taken()
        # consumed before this returns, as a store other than the local one does (the
        # local one writes in a thread, from the buffer the connection lends it)
        await self._upload.write(index, bytes(data))

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
        assert peer.meta(1, len(DATA), new_upload_id(), "whole.bin")[0] == ACK
        peer.chunks(1, DATA)
        assert peer.response()[0] == RECEIVED
        assert peer.verdict(RequestCode.CRC_OK, 1)[0] == ACK
        assert peer.meta(2, len(DATA), new_upload_id(), "taken.bin")[0] == ACK
        try:
            peer.chunks(2, DATA)
        except ConnectionError:
            return features, True  # cut while sending
        closed = peer.closed_by_server()
        peer.close()
        return features, closed

    with captured_logs() as logs:
        (features, cut), _ = serve_one(context, client)
    assert not features & hs.FEATURE_STREAM
    assert _stored(tmp_path) == {"whole.bin": DATA}, "an upload not asked for is stored"
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


def test_an_empty_folder_is_made_under_the_client_s_files(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    empty = tmp_path / "tree" / "f" / "g"
    empty.mkdir(parents=True)
    assert _stream(tmp_path, context, [empty.parent], "abel") is None
    folders = [
        "/".join(path.relative_to(tmp_path / "data" / "v4" / "files").parts[1:])
        for path in (tmp_path / "data" / "v4" / "files").rglob("*")
    ]
    assert sorted(folders) == ["", "f", "f/g"]


def test_staged_files_are_synced_in_batches_of_the_group_s_share_of_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of the wide window is 128 files and there are 8 sync threads: a batch of
    16 starts as soon as 16 are staged, the rest with the commit."""
    monkeypatch.setenv("EFT_PACK", "0")  # STREAM's own records, not PACK's
    batches: list[int] = []
    start = connection_v4.start_syncs

    def counted(uploads: list[Any]) -> Any:
        batches.append(len(uploads))
        return start(uploads)

    monkeypatch.setattr(connection_v4, "start_syncs", counted)
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {f"b{n:02d}": n for n in range(40)})
    assert _stream(tmp_path, context, files, "bert") is None
    assert len(_stored(tmp_path)) == 40
    assert batches == [16, 16, 8]


def test_a_sha256_upload_is_recorded_with_sha256(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    sha256 = int(DigestAlgorithm.SHA256)

    def client(address: str) -> bytes:
        peer = WireV4(address)
        peer.register("cleo")
        meta = meta_plaintext(1, len(DATA), new_upload_id(), "s.bin", sha256)
        peer.request(RequestCode.SEND_FILE, meta)
        assert peer.response()[0] == ACK
        peer.chunks(1, DATA)
        assert peer.response()[0] == RECEIVED
        assert peer.verdict(RequestCode.CRC_OK, 1)[0] == ACK
        peer.close()
        return peer.client_id

    client_id, _ = serve_one(context, client)
    record = context.registry.file_v4(client_id, "s.bin")
    assert record is not None
    assert (record.digest, record.algorithm) == (hashlib.sha256(DATA).digest(), "sha256")


# --- the end of a connection: the linger after an error answer ---------------------------


class _Clock:
    """``connection_v4``'s clock (``time.monotonic``) as the test says it reads: each
    call the next of ``readings``, then ``then`` seconds later each time."""

    def __init__(self, *readings: float, then: float) -> None:
        self._readings = list(readings)
        self._last = readings[-1]
        self._then = then

    def monotonic(self) -> float:
        if self._readings:
            self._last = self._readings.pop(0)
        else:
            self._last += self._then
        return self._last

    time = staticmethod(time.time)


class _Counting(FrameReader):
    """Counts the linger's reads (of ``LINGER_READ`` bytes); can fail the first one as
    the transport reports a socket error (``connection_lost``)."""

    lingered = 0
    fail_with: OSError | None = None

    async def fill(self, seconds: float) -> bool:
        lingering = self._want == connection_v4.LINGER_READ  # (a record's is larger)
        if lingering and self.fail_with is not None:
            self.connection_lost(self.fail_with)
        filled = await super().fill(seconds)
        if lingering and filled:
            _Counting.lingered += 1
        return filled


class _Watched(ConnectionV4):
    """Notes how its run ended; ``_before_close`` may wait for the client first."""

    failure: BaseException | None = None
    before_close: threading.Event | None = None
    ended = threading.Event()

    async def run(self) -> None:
        try:
            await super().run()
        except BaseException as exc:  # what the test asserts on
            type(self).failure = exc
            self.writer.transport.abort()  # the client fails now, not at its timeout
        finally:
            type(self).ended.set()

    async def _before_close(self) -> None:
        if self.before_close is not None:
            await asyncio.to_thread(self.before_close.wait, WAIT)
        await super()._before_close()


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> type[_Watched]:
    class Watched(_Watched):
        ended = threading.Event()

    monkeypatch.setattr(in_process_server, "ConnectionV4", Watched)
    monkeypatch.setattr(connection_v4, "FrameReader", _Counting)
    monkeypatch.setattr(_Counting, "lingered", 0)
    return Watched


def _failing_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(self: Any, index: int, data: Any) -> None:
        raise StorageError("no room") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalUnfinishedUpload, "write", full)


def _refused_chunk(address: str) -> WireV4:
    """A client whose first chunk the server could not store: error 7 read."""
    peer = WireV4(address)
    peer.register("lingo")
    assert peer.meta(1, len(DATA), new_upload_id(), "x.bin")[0] == ACK
    peer.chunks(1, DATA, 1, 1)
    code, plaintext = peer.response()
    assert (code, rec.decode_error(plaintext)[0]) == (ERROR, rec.ErrorCode.STORAGE)
    return peer


def _send_until_cut(peer: WireV4, size: int) -> None:
    """Send ``size`` bytes more, or as many as the server reads before it closes."""
    with contextlib.suppress(OSError):
        peer.sock.sendall(bytes(size))


@pytest.mark.parametrize(
    ("clock", "linger_bytes", "reads"),
    [
        # the clock stands still: the byte bound ends it (5 reads of 4 KiB)
        (_Clock(1000.0, then=0.0), 5 * 4096, 5),
        # 64 MiB allowed: the time ends it, the read timeout (30 s) after it began (at
        # 1000): 20 s left, then 0.5 s (still a read), then none
        (_Clock(1000.0, 1010.0, 1029.5, 1031.0, then=1.0), 64 * 1024 * 1024, 2),
    ],
)
def test_the_linger_is_bounded_in_bytes_and_in_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    watched: type[_Watched],
    clock: _Clock,
    linger_bytes: int,
    reads: int,
) -> None:
    _failing_writes(monkeypatch)
    monkeypatch.setattr(connection_v4, "LINGER_BYTES", linger_bytes)
    monkeypatch.setattr(connection_v4, "time", clock)  # read by the linger only
    context = make_context(tmp_path / "data", read_timeout=30.0)

    def client(address: str) -> None:
        peer = _refused_chunk(address)
        _send_until_cut(peer, rec.CHUNK)  # 256 reads' worth
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    assert _Counting.lingered == reads
    assert watched.failure is None
    assert "connection_lost" not in events(logs)


def test_a_linger_the_client_ends_ends_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    """The client reads the error and closes while the server drops what it still
    sends: the end of a linger, not a lost connection."""
    _failing_writes(monkeypatch)
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = _refused_chunk(address)
        peer.sock.sendall(bytes(3 * 4096 + 100))  # three whole reads, then a part
        peer.sock.shutdown(socket.SHUT_WR)
        assert peer.closed_by_server()
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    assert _Counting.lingered == 3
    assert watched.failure is None
    assert "connection_lost" not in events(logs)


def test_a_linger_the_client_resets_ends_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    """The client resets the connection before the server says it is done writing:
    ending the write side fails (the socket is gone), so does the read; both expected."""
    _failing_writes(monkeypatch)
    watched.before_close = reset = threading.Event()
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = _refused_chunk(address)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset
        reset.set()

    with captured_logs() as logs:
        serve_one(context, client)
    assert watched.failure is None
    assert "connection_lost" not in events(logs)


def test_a_linger_whose_socket_fails_ends_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    """A read error that is not a reset (a TCP timeout) while lingering, as the
    transport reports it: the connection ends, without a line for it."""
    _failing_writes(monkeypatch)
    monkeypatch.setattr(_Counting, "fail_with", TimeoutError(errno.ETIMEDOUT, "timed out"))
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        peer = _refused_chunk(address)
        assert peer.closed_by_server()
        peer.close()

    with captured_logs() as logs:
        serve_one(context, client)
    assert watched.failure is None
    assert "connection_lost" not in events(logs)


def test_a_close_the_session_chooses_without_an_error_answer_is_at_once(
    tmp_path: Path, watched: type[_Watched]
) -> None:
    """A bad record closes the connection silently: nothing to linger for, so it ends
    while the client still holds its side open."""
    context = make_context(tmp_path / "data")

    def client(address: str) -> bool:
        peer = WireV4(address)
        peer.register("mute")
        peer.send(peer.record(RequestCode.SEND_FILE, b"?", client_id=bytes(16)))
        ended = watched.ended.wait(WAIT)  # a bound: a linger would last the read timeout
        peer.close()
        return ended

    ended, _ = serve_one(context, client)
    assert ended
    assert _Counting.lingered == 0


def test_a_client_s_records_are_counted_against_its_share_of_the_buffers(
    tmp_path: Path,
) -> None:
    """Once a connection speaks for a client, the record buffers (and the plaintext
    buffers) it takes are counted against the client, not the connection."""
    context = make_context(tmp_path / "data")
    pool = context.record_buffers
    assert pool is not None and pool.plaintexts is not None
    owners: list[object] = []
    for each in (pool, pool.plaintexts):
        take_now = each.take_now

        def watched(owner: object = None, take_now: Any = take_now) -> memoryview | None:
            owners.append(owner)
            buffer: memoryview | None = take_now(owner)
            return buffer

        each.take_now = watched  # type: ignore[method-assign]

    def client(address: str) -> bytes:
        peer = WireV4(address)
        peer.register("owen")
        assert peer.meta(1, len(DATA), new_upload_id(), "o.bin")[0] == ACK
        peer.chunks(1, DATA)
        assert peer.response()[0] == RECEIVED
        peer.close()
        return peer.client_id

    client_id, _ = serve_one(context, client)
    assert owners == [client_id] * 4  # two records: a record buffer and a plaintext each


def test_a_streamed_file_sent_again_is_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``files_streamed`` counts the files stored: one whose first digest differed (and
    was sent again) is one file, its bytes once."""
    commit_if = ClientSessionV4.commit_if
    spoiled: list[bool] = []

    def once_wrong(self: ClientSessionV4, digest: bytes, *, sync_now: bool) -> bytes:
        if not spoiled:
            spoiled.append(True)
            digest = bytes(len(digest))
        return commit_if(self, digest, sync_now=sync_now)

    monkeypatch.setattr(ClientSessionV4, "commit_if", once_wrong)
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {"again.bin": 300})
    with captured_logs() as logs:
        assert _stream(tmp_path, context, files, "dana") is None
    assert _stored(tmp_path) == {"again.bin": files[0].read_bytes()}
    streamed = [entry for entry in logs if entry["event"] == "files_streamed"]
    assert [(e["files"], e["bytes"]) for e in streamed] == [(1, 300)]


# --- a group's syncs when the group fails ------------------------------------------------


def _part(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}").endswith(".part")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_a_group_whose_data_sync_fails_is_refused_and_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if _part(fd):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {"g0": 10, "g1": 20, "g2": 30})
    failed = _stream(tmp_path, context, files, "gail")
    assert str(failed).startswith("server error 7: the server could not store it"), failed
    assert _stored(tmp_path) == {}
    assert not list((tmp_path / "data" / "v4" / "partial").rglob("*.part")), "discarded"
    assert watched.failure is None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_staged_files_are_not_discarded_under_a_sync_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: type[_Watched]
) -> None:
    """The first 16 files' sync is held; the 20th file cannot be written, so the group
    is discarded: not before that sync has ended (a file is not closed or removed under
    a sync running on it)."""
    monkeypatch.setenv("EFT_PACK", "0")  # STREAM's own records, not PACK's
    released = threading.Event()  # the held sync may go on
    early: list[str] = []  # files discarded while it was held
    real_fsync = os.fsync
    syncs: list[Any] = []
    start = connection_v4.start_syncs
    wrap_future = asyncio.wrap_future
    discard = PartialUpload.discard
    write_chunk = PartialUpload._write_chunk

    def held(fd: int) -> None:
        if _part(fd):
            released.wait(WAIT)  # a bound: set by one of the two paths below
        real_fsync(fd)

    def started(uploads: list[Any]) -> Any:
        future = start(uploads)
        syncs.append(future)
        return future

    def awaited(future: Any, **kwargs: Any) -> Any:
        if any(future is sync for sync in syncs):
            released.set()  # the connection waits for it: let it end
        return wrap_future(future, **kwargs)

    def discarded(self: PartialUpload) -> None:
        if not released.is_set():
            early.append(self.name)
            released.set()
        discard(self)

    def refused(self: PartialUpload, data: Any) -> None:
        if self.name == "h19":
            raise StorageError("no room") from OSError(errno.ENOSPC, "No space left")
        write_chunk(self, data)

    monkeypatch.setattr(os, "fsync", held)
    monkeypatch.setattr(connection_v4, "start_syncs", started)
    monkeypatch.setattr(asyncio, "wrap_future", awaited)
    monkeypatch.setattr(PartialUpload, "discard", discarded)
    monkeypatch.setattr(PartialUpload, "_write_chunk", refused)
    context = make_context(tmp_path / "data")
    files = _sources(tmp_path, {f"h{n:02d}": 10 + n for n in range(20)})
    failed = _stream(tmp_path, context, files, "hugo")
    assert str(failed).startswith("server error 7"), failed
    assert len(syncs) == 1 and released.is_set()
    assert early == []
    assert _stored(tmp_path) == {}
    assert watched.failure is None


def test_a_chunk_that_could_not_be_stored_gives_its_plaintext_buffer_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_writes(monkeypatch)
    context = make_context(tmp_path / "data")

    def client(address: str) -> None:
        _refused_chunk(address).close()

    serve_one(context, client)
    plaintexts = context.record_buffers.plaintexts
    taken = [plaintexts.take_now() for _ in range(4)]  # make_context's pool: 4
    assert all(buffer is not None for buffer in taken), "every one given back"


def test_a_chunk_is_opened_into_a_plaintext_buffer_of_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk's plaintext is a view of a buffer the server lends (issue 22), not a
    new 1 MiB object per record."""
    context = make_context(tmp_path / "data")
    written: list[object] = []
    write = PartialUpload.write

    def watched(self: PartialUpload, index: int, data: Any) -> None:
        written.append(data.obj if isinstance(data, memoryview) else data)
        write(self, index, data)

    monkeypatch.setattr(PartialUpload, "write", watched)

    def client(address: str) -> None:
        peer = WireV4(address)
        peer.register("pool")
        assert peer.meta(1, len(DATA), new_upload_id(), "p.bin")[0] == ACK
        peer.chunks(1, DATA)
        assert peer.response()[0] == RECEIVED
        peer.close()

    serve_one(context, client)
    plaintexts = context.record_buffers.plaintexts
    lent = [plaintexts.take_now() for _ in range(4)]
    pool = [buffer.obj for buffer in lent if buffer is not None]
    assert len(written) == 2
    assert all(any(data is buffer for buffer in pool) for data in written)
