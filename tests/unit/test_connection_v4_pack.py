"""Small files packed (feature PACK: 904, answered by 1608) through the real version-4
connection, in this process over loopback (tests/unit/in_process_server.py): the real
client's trees stored byte-exact and recorded, hundreds of small files sent as packs and
counted as the transfers they are, a hostile client's bad names each refused with its
own message while the session goes on, a differing digest sent again, and a disk that
fails mid-pack closing the connection with nothing staged left behind."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer_v4 as t4
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_protocol.v4 import records as rec
from eft_protocol.v4.client import ClientSessionV4
from eft_protocol.v4.file_digest import DigestAlgorithm, file_digest
from eft_protocol.v4.handshake import FEATURE_PACK
from eft_protocol.v4.pack import (
    PACK,
    PACK_ANSWER,
    PACK_FILES,
    Outcome,
    Refusal,
    decode_answer,
    encode_pack,
)
from eft_server import pack_store
from tests.v4.wire_client import WireV4

from .in_process_server import captured_logs, make_context, serve_one, value


def _run(tmp_path: Path, context: Any, sources: list[Path], name: str) -> Exception | None:
    """The version-4 client's whole run against ``context``: the error it ended with."""

    def client(address: str) -> Exception | None:
        host, _, port = address.rpartition(":")
        settings = ClientSettings(host, int(port), name, tmp_path / "client", retries=0)
        try:
            asyncio.run(t4.run_v4(settings, sources, Reporter()))
        except Exception as exc:
            return exc
        return None

    return serve_one(context, client)[0]


def _files_root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "v4" / "files"


def _stored(tmp_path: Path) -> dict[str, bytes | None]:
    """Everything under the clients' folders: relative path (without the client's
    folder) -> content, None for a folder."""
    root = _files_root(tmp_path)
    found: dict[str, bytes | None] = {}
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts[1:]
        if parts:
            found["/".join(parts)] = None if path.is_dir() else path.read_bytes()
    return found


def _tree(top: Path) -> dict[str, bytes | None]:
    """``top`` as ``_stored`` shows it once sent: under its own name."""
    found: dict[str, bytes | None] = {top.name: None}
    for path in top.rglob("*"):
        name = "/".join((top.name, *path.relative_to(top).parts))
        found[name] = None if path.is_dir() else path.read_bytes()
    return found


def _no_parts(tmp_path: Path) -> bool:
    return not list((tmp_path / "data" / "v4" / "partial").rglob("*.part"))


def _make_tree(top: Path) -> None:
    rng = random.Random(25)
    for relative, size in {
        "README.md": 40,
        "naïve/café/crème brûlée.txt": 300,
        "Кириллица/Привет мир.txt": 1000,
        "日本語/フォルダ/メモ.txt": 2000,
        "中文/文件.bin": 0,
        "emoji 🎉/🚀 launch.txt": 77,
        "deep/a/b/c/d/e/f.txt": 5,
        "big/over a record.bin": rec.MAX_PLAINTEXT + 10,  # not packed: goes on its own
    }.items():
        path = top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    (top / "empty").mkdir()
    (top / "nested" / "empty" / "ünïcode 空").mkdir(parents=True)


def test_a_tree_in_several_scripts_is_packed_stored_byte_exact_and_recorded(
    tmp_path: Path,
) -> None:
    top = tmp_path / "sources" / "projet"
    _make_tree(top)
    context = make_context(tmp_path / "data")
    assert _run(tmp_path, context, [top], "tess") is None
    assert _stored(tmp_path) == _tree(top)
    files = {name: data for name, data in _tree(top).items() if data is not None}
    records = {r.file_name: r for r in context.registry.files_v4()}
    assert sorted(records) == sorted(files)
    for name, data in files.items():
        record = records[name]
        assert Path(record.path).read_bytes() == data
        assert (record.size, record.digest, record.algorithm) == (
            len(data),
            file_digest(data).digest(),
            "blake3",
        )
    assert value(context, "eft_requests_total", code=str(PACK), version="4") == 1
    # the one file larger than a record went on its own, one at a time (its 900)
    assert value(context, "eft_requests_total", code="900", version="4") == 1
    assert value(context, "eft_requests_total", code="903", version="4") == 0
    assert value(context, "eft_transfers_total", outcome="verified", version="4") == len(files)
    assert value(context, "eft_stored_plaintext_bytes_total", version="4") == sum(
        len(data) for data in files.values()
    )
    assert _no_parts(tmp_path)


def test_hundreds_of_small_files_come_as_packs(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    rng = random.Random(300)
    paths = []
    for n in range(320):
        path = sources / f"s{n:03d}.txt"
        path.write_bytes(rng.randbytes(n % 97))
        paths.append(path)
    context = make_context(tmp_path / "data")
    with captured_logs() as logs:
        assert _run(tmp_path, context, paths, "petra") is None
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in paths}
    assert value(context, "eft_requests_total", code=str(PACK), version="4") == 320 / PACK_FILES
    assert value(context, "eft_requests_total", code="828", version="4") == 0
    assert value(context, "eft_requests_total", code="903", version="4") == 0
    assert value(context, "eft_responses_total", code=str(PACK_ANSWER), version="4") == 5
    total = sum(n % 97 for n in range(320))
    assert value(context, "eft_transfers_total", outcome="verified", version="4") == 320
    assert value(context, "eft_stored_plaintext_bytes_total", version="4") == total
    streamed = [entry for entry in logs if entry["event"] == "files_streamed"]
    assert [(e["files"], e["bytes"]) for e in streamed] == [(320, total)]
    assert len(context.registry.files_v4()) == 320
    assert _no_parts(tmp_path)


def test_without_pack_the_client_streams_small_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EFT_PACK", "0")
    paths = []
    (tmp_path / "sources").mkdir()
    for n in range(3):
        path = tmp_path / "sources" / f"n{n}"
        path.write_bytes(bytes([n]) * n)
        paths.append(path)
    context = make_context(tmp_path / "data")
    assert _run(tmp_path, context, paths, "nopack") is None
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in paths}
    assert value(context, "eft_requests_total", code=str(PACK), version="4") == 0
    assert value(context, "eft_requests_total", code="903", version="4") == 3


def test_a_packed_file_whose_digest_differed_is_sent_again_and_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal = ClientSessionV4.seal_pack
    spoiled: list[str] = []

    def once_wrong(self: ClientSessionV4, files: Any, **kwargs: Any) -> Any:
        if not spoiled:  # the first pack's first file: a digest of other data
            name, _, data = files[0]
            spoiled.append(name.decode())
            files = [(name, file_digest(b"other").digest(), data), *files[1:]]
        return seal(self, files, **kwargs)

    monkeypatch.setattr(ClientSessionV4, "seal_pack", once_wrong)
    (tmp_path / "sources").mkdir()
    paths = []
    for n in range(3):
        path = tmp_path / "sources" / f"r{n}.bin"
        path.write_bytes(random.Random(n).randbytes(100 + n))
        paths.append(path)
    context = make_context(tmp_path / "data")
    assert _run(tmp_path, context, paths, "resa") is None
    assert spoiled == ["r0.bin"]
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in paths}
    assert value(context, "eft_requests_total", code=str(PACK), version="4") == 2
    assert value(context, "eft_transfers_total", outcome="retried", version="4") == 1
    assert value(context, "eft_transfers_total", outcome="verified", version="4") == 3
    assert value(context, "eft_stored_plaintext_bytes_total", version="4") == 303
    records = {r.file_name: r.digest for r in context.registry.files_v4()}
    assert records["r0.bin"] == file_digest(paths[0].read_bytes()).digest()


HOSTILE = {
    b"../x": "'../x' has a '..' component",
    b"/etc/x": "'/etc/x' is an absolute path; only relative ones are stored",
    b"a//b": "'a//b' has an empty component (// or a final /)",
    b"c\x07d": "'c\\x07d' contains the control character U+0007",
    b"nul.txt": "'nul.txt' in 'nul.txt' is a reserved device name",
}


def test_a_hostile_client_s_bad_names_are_refused_each_with_its_own_message(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")
    outside = tmp_path / "data" / "v4" / "x"

    def client(address: str) -> tuple[Any, ...]:
        peer = WireV4(address)
        peer.register("hostile")
        assert peer.server_hello is not None and peer.server_hello.features & FEATURE_PACK
        entries = [(b"fine.txt", file_digest(b"ok").digest(), b"ok")]
        entries += [(name, file_digest(b"bad").digest(), b"bad") for name in HOSTILE]
        peer.request(PACK, bytes(encode_pack(1, 1, entries, sync_now=True)))
        first = peer.response()
        # the session goes on: another pack is stored as any
        after = [(b"after.txt", file_digest(b"later").digest(), b"later")]
        peer.request(PACK, bytes(encode_pack(7, 1, after, sync_now=True)))
        second = peer.response()
        peer.close()
        return first, second, peer.client_id

    (first, second, client_id), _ = serve_one(context, client)
    assert first[0] == PACK_ANSWER and second[0] == PACK_ANSWER
    assert decode_answer(first[1]) == (
        1,
        [Outcome.STORED]
        + [Refusal(rec.ErrorCode.BAD_FILE_NAME, message) for message in HOSTILE.values()],
    )
    assert decode_answer(second[1]) == (7, [Outcome.STORED])
    assert _stored(tmp_path) == {"fine.txt": b"ok", "after.txt": b"later"}
    # nothing written anywhere but the client's folder
    written = {
        path.relative_to(tmp_path).as_posix()
        for path in tmp_path.rglob("*")
        if path.is_file() and "partial" not in path.parts
    }
    root = f"data/v4/files/{client_id.hex()}"
    assert written == {f"{root}/fine.txt", f"{root}/after.txt"}
    assert not outside.exists() and not Path("/etc/x").exists()
    assert _no_parts(tmp_path)


def test_a_name_in_the_way_is_refused_in_the_answer_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    context = make_context(tmp_path / "data")

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.register("blocked")
        root = _files_root(tmp_path) / peer.client_id.hex()
        (root / "taken").mkdir(parents=True)
        entries = [
            (name.encode(), file_digest(data).digest(), data)
            for name, data in (("a.txt", b"a"), ("taken", b"t"), ("taken/b.txt", b"b"))
        ]
        peer.request(PACK, bytes(encode_pack(1, 1, entries, sync_now=True)))
        answer = peer.response()
        peer.close()
        return answer

    (code, plaintext), _ = serve_one(context, client)
    assert code == PACK_ANSWER
    assert decode_answer(plaintext) == (
        1,
        [
            Outcome.STORED,
            Refusal(rec.ErrorCode.BAD_FILE_NAME, "taken is a folder on the server"),
            Outcome.STORED,
        ],
    )
    assert _stored(tmp_path) == {"a.txt": b"a", "taken": None, "taken/b.txt": b"b"}


def test_a_storage_error_mid_pack_closes_with_error_7_and_leaves_nothing_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pack is staged (its group not yet due); the second one's third file
    cannot be written: the connection answers error 7 and closes, and neither pack's
    files are left, staged or stored."""
    real_write_all = pack_store._write_all
    writes: list[int] = []

    def failing(fd: int, data: memoryview) -> None:
        writes.append(fd)
        if len(writes) == 5:
            raise OSError(errno.EIO, "Input/output error")
        real_write_all(fd, data)

    monkeypatch.setattr(pack_store, "_write_all", failing)
    context = make_context(tmp_path / "data")

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.register("faulty")
        pack = [(f"p{n}".encode(), file_digest(b"x").digest(), b"x") for n in range(3)]
        peer.request(PACK, bytes(encode_pack(1, 1, pack)))
        peer.request(PACK, bytes(encode_pack(4, 1, pack, sync_now=True)))
        answer = peer.response()
        assert peer.closed_by_server()
        peer.close()
        return answer

    (code, plaintext), _ = serve_one(context, client)
    assert code == 1607
    assert rec.decode_error(plaintext) == (
        rec.ErrorCode.STORAGE,
        "the server could not store it: Input/output error (EIO)",
    )
    assert len(writes) == 5
    assert _stored(tmp_path) == {}
    assert _no_parts(tmp_path)
    assert context.registry.files_v4() == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names synced files by /proc")
def test_a_pack_whose_group_cannot_be_synced_is_refused_and_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    (tmp_path / "sources").mkdir()
    paths = []
    for n in range(4):
        path = tmp_path / "sources" / f"g{n}"
        path.write_bytes(bytes(n + 1))
        paths.append(path)
    context = make_context(tmp_path / "data")
    failed = _run(tmp_path, context, paths, "gwen")
    assert str(failed).startswith("server error 7: the server could not store it"), failed
    assert _stored(tmp_path) == {}
    assert _no_parts(tmp_path)
    assert context.registry.files_v4() == []
    # Not counted as stored either: the notice waits for the group's durability.
    verified = value(context, "eft_transfers_total", outcome="verified", version="4")
    assert verified == 0
    assert value(context, "eft_stored_plaintext_bytes_total", version="4") == 0


def test_packs_and_a_streamed_file_between_them_are_answered_each_in_its_order(
    tmp_path: Path,
) -> None:
    """Packs fill up to a record (three files of 100 KB, then 400 KB each: two fit in
    one, the third starts the next); a file of one record too large to pack goes as
    STREAM's records between two packs; the answers (1608, 1603, 1604, 1608) reach
    the right files."""
    sizes = [100, 400_000, 400_000, 400_000, rec.CHUNK - 10, 5, 0]
    (tmp_path / "sources").mkdir()
    paths = []
    for n, size in enumerate(sizes):
        path = tmp_path / "sources" / f"m{n}.bin"
        path.write_bytes(random.Random(n).randbytes(size))
        paths.append(path)
    context = make_context(tmp_path / "data")
    assert _run(tmp_path, context, paths, "mixa") is None
    assert _stored(tmp_path) == {path.name: path.read_bytes() for path in paths}
    # [100, 400k, 400k] [400k] streamed [5, 0]
    assert value(context, "eft_requests_total", code=str(PACK), version="4") == 3
    assert value(context, "eft_requests_total", code="903", version="4") == 1
    assert value(context, "eft_transfers_total", outcome="verified", version="4") == 7
    assert _no_parts(tmp_path)


def test_a_packed_file_refused_ends_the_real_client_s_run_with_the_file_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something in the way of one packed file on the server: the client reports the
    server's refusal as it would a 1607 about that file; the files packed before it
    are stored and recorded."""
    (tmp_path / "sources").mkdir()
    paths = []
    for name in ("a.txt", "clash", "z.txt"):
        path = tmp_path / "sources" / name
        path.write_bytes(name.encode())
        paths.append(path)
    context = make_context(tmp_path / "data")
    key_dir = tmp_path / "data" / "v4" / "files"
    real_stage = pack_store.stage_pack

    def with_a_folder_in_the_way(store: Any, client_id: bytes, *args: Any, **kw: Any) -> Any:
        (key_dir / client_id.hex() / "clash").mkdir(parents=True, exist_ok=True)
        return real_stage(store, client_id, *args, **kw)

    monkeypatch.setattr(pack_store, "stage_pack", with_a_folder_in_the_way)
    failed = _run(tmp_path, context, paths, "clara")
    assert str(failed) == "server error 2: clash is a folder on the server", failed
    assert _stored(tmp_path) == {"a.txt": b"a.txt", "clash": None, "z.txt": b"z.txt"}
    assert sorted(r.file_name for r in context.registry.files_v4()) == ["a.txt", "z.txt"]


def test_a_pack_of_sha256_digests_is_checked_and_recorded_with_sha256(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")
    data = {"s1": b"one", "s2": b"two"}

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.register("shay")
        entries = [(n.encode(), hashlib.sha256(d).digest(), d) for n, d in data.items()]
        entries.append((b"s3", file_digest(b"blake3, not sha256").digest(), b"three"))
        peer.request(PACK, bytes(encode_pack(1, DigestAlgorithm.SHA256, entries, sync_now=True)))
        answer = peer.response()
        peer.close()
        return answer

    (code, plaintext), _ = serve_one(context, client)
    assert code == PACK_ANSWER
    assert decode_answer(plaintext) == (
        1,
        [Outcome.STORED, Outcome.STORED, Outcome.DIGEST_DIFFERED],
    )
    records = sorted(context.registry.files_v4(), key=lambda record: record.file_name)
    assert [(r.file_name, r.digest, r.algorithm) for r in records] == [
        (name, hashlib.sha256(content).digest(), "sha256") for name, content in data.items()
    ]


@pytest.mark.parametrize(
    ("first", "second", "refusal"),
    [
        ("a", "a/b", "a is a file sent with it, not a folder"),
        ("x/y", "x", "x is a folder of another file sent with it"),
    ],
)
def test_a_file_and_a_folder_of_one_name_in_one_group_refuse_the_later_one(
    tmp_path: Path, first: str, second: str, refusal: str
) -> None:
    """Two packs of one group (no SYNC_NOW between them): the disk shows neither name
    yet, so only the group knows that ``first`` takes ``second``'s place. The later
    one is refused before its data (error 2); the group commits, and every file on the
    disk has its registry row. Without the group's names the commit failed: error 7,
    the group lost, and ``first`` renamed into place with no row."""
    context = make_context(tmp_path / "data")

    def client(address: str) -> tuple[int, bytes]:
        peer = WireV4(address)
        peer.register("mixed")
        one = [(first.encode(), file_digest(b"1").digest(), b"1")]
        peer.request(PACK, bytes(encode_pack(1, 1, one)))
        two = [
            (second.encode(), file_digest(b"2").digest(), b"2"),
            (b"other.txt", file_digest(b"3").digest(), b"3"),
        ]
        peer.request(PACK, bytes(encode_pack(2, 1, two, sync_now=True)))
        answers = [peer.response(), peer.response()]
        peer.close()
        return answers[1]

    (code, plaintext), _ = serve_one(context, client)
    assert code == PACK_ANSWER
    assert decode_answer(plaintext) == (
        2,
        [Refusal(rec.ErrorCode.BAD_FILE_NAME, refusal), Outcome.STORED],
    )
    stored = {name: data for name, data in _stored(tmp_path).items() if data is not None}
    assert stored == {first: b"1", "other.txt": b"3"}
    assert sorted(r.file_name for r in context.registry.files_v4()) == sorted(stored)


def test_streamed_files_of_one_group_are_checked_against_each_other_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAM (``EFT_PACK=0``): a file ``a`` and a folder ``a`` holding ``b`` given
    together; ``a/b`` is refused with error 2 before its data, ``a`` is stored with its
    row, and the group is not lost."""
    monkeypatch.setenv("EFT_PACK", "0")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a").write_bytes(b"file a")
    (tmp_path / "two" / "a").mkdir(parents=True)
    (tmp_path / "two" / "a" / "b").write_bytes(b"file b")
    context = make_context(tmp_path / "data")
    failed = _run(tmp_path, context, [tmp_path / "one" / "a", tmp_path / "two" / "a"], "sam")
    assert str(failed) == "server error 2: a is a file sent with it, not a folder", failed
    assert _stored(tmp_path) == {"a": b"file a"}
    assert [r.file_name for r in context.registry.files_v4()] == ["a"]


def test_a_folder_s_file_gone_after_the_walk_is_a_clear_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk's ``lstat`` is the last look before the file is opened to be read (no
    stat in between, issue 25): a file removed meanwhile stops the run with the words
    ``file_size`` uses, and the files read before it are stored."""
    top = tmp_path / "tree"
    top.mkdir()
    for name in ("a.txt", "b.txt"):
        (top / name).write_bytes(name.encode())
    real_send = t4.Version4.send_streamed

    async def then_remove(self: t4.Version4, *args: Any) -> None:
        (top / "b.txt").unlink()  # connected: between the walk and the read
        await real_send(self, *args)

    monkeypatch.setattr(t4.Version4, "send_streamed", then_remove)
    context = make_context(tmp_path / "data")
    failed = _run(tmp_path, context, [top], "gone")
    assert isinstance(failed, t4.ConfigError)
    assert str(failed) == f"cannot read {top / 'b.txt'}: No such file or directory"
