"""``eft-client DIR…`` (version 4) with real processes: trees with nested and empty
folders and names in several scripts, links and special files skipped (or followed),
a cut in the middle of a folder then a rerun that sends only what is missing, a file
that changes while it is read (exit 11), and version 3 refusing a folder."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.support.processes import ClientDir, ProxyProcess, ServerProcess


def _v4(client_factory: Callable[..., ClientDir], name: str, address: str) -> ClientDir:
    client = client_factory(name, address)
    client.protocol = 4
    return client


def _own(server: ServerProcess, client: ClientDir) -> Path:
    return server.data_dir / "v4" / "files" / client.client_id_hex


def _tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a folder), of what is under ``root``."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def _make_tree(root: Path) -> Path:
    top = root / "projet"
    for relative, content in {
        "README.md": b"# hello\n",
        "src/main.py": b"print('hi')\n" * 50,
        "src/pkg/__init__.py": b"",
        "docs/résumé (final).pdf": b"%PDF" + bytes(3000),
        "docs/日本語/メモ.txt": "メモ".encode() * 100,
        "docs/Кириллица.txt": "текст".encode(),
        "docs/عربي.txt": "نص".encode(),
        "data/big.bin": bytes(range(256)) * 6000,  # over one record: sent alone
    }.items():
        path = top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (top / "empty").mkdir()
    (top / "nested" / "empty" / "deeper").mkdir(parents=True)
    return top


def test_a_tree_with_nested_and_empty_folders_is_stored_as_it_is(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    top = _make_tree(tmp_path)
    expected = _tree(top)
    (top / "link-to-readme").symlink_to(top / "README.md")
    os.mkfifo(top / "a-fifo")
    client = _v4(client_factory, "ida", server.address)
    run = client.run([top])
    assert run.returncode == 0, run.stderr
    skipped = {Path(e["path"]).name for e in run.events if e["event"] == "skipped"}
    assert skipped == {"link-to-readme", "a-fifo"}
    assert _tree(_own(server, client) / "projet") == expected
    folders = next(e for e in run.events if e["event"] == "folders")
    assert folders["files"] == 8 and folders["empty_folders"] == 2
    last = [e for e in run.events if e["event"] == "file_verified"][-1]
    assert (last["files_done"], last["files_total"]) == (8, 8)
    assert (
        last["bytes_done"]
        == last["bytes_total"]
        == sum(len(c) for c in expected.values() if c is not None)
    )


def test_follow_symlinks_sends_what_a_link_points_to(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    top = tmp_path / "t"
    (top / "real").mkdir(parents=True)
    (top / "real" / "a.txt").write_bytes(b"a")
    (top / "alias").symlink_to(top / "real")
    (top / "real" / "loop").symlink_to(top)  # back to the top: not walked again
    client = _v4(client_factory, "jon", server.address)
    run = client.run([top], "--follow-symlinks")
    assert run.returncode == 0, run.stderr
    stored = _own(server, client) / "t"
    assert (stored / "alias" / "a.txt").read_bytes() == b"a"
    assert (stored / "real" / "a.txt").read_bytes() == b"a"
    assert any("loop" in e["reason"] for e in run.events if e["event"] == "skipped")


def test_a_cut_folder_run_again_sends_only_what_is_missing(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    top = tmp_path / "photos"
    top.mkdir()
    # More than a wide window (256 files): the client reads the first group's answers
    # before the cut at half the bytes (about file 385).
    for i in range(600):
        (top / f"img{i:03}.jpg").write_bytes(bytes([i % 256]) * (1000 + 7 * i))
    total = sum(p.stat().st_size for p in top.iterdir())
    proxy = proxy_factory(server.address, "never", "--cut-after", str(total // 2))
    client = _v4(client_factory, "kai", proxy.address)
    cut = client.run([top], "--retries", "0")
    assert cut.returncode == ExitCode.CANNOT_CONNECT, cut.stderr
    first = [e["file"] for e in cut.events if e["event"] == "file_verified"]
    assert 0 < len(first) < 600
    again = client.run([top])
    assert again.returncode == 0, again.stderr
    skipped = [e["file"] for e in again.events if e["event"] == "file_skipped"]
    sent = [e["file"] for e in again.events if e["event"] == "file_verified"]
    assert sorted(skipped) == sorted(first), "every file verified before is skipped"
    assert sorted(sent + skipped) == sorted(f"photos/{p.name}" for p in top.iterdir())
    assert _tree(_own(server, client) / "photos") == _tree(top)


def test_ten_thousand_files_go_in_one_session_and_are_stored_as_they_are(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    """Issue 25's many small files: 10,000 files in 100 folders, one connection (no
    reconnection), every one verified and stored byte for byte, and the server's
    registry holding a row for each."""
    top = tmp_path / "many"
    for i in range(10_000):
        folder = top / f"d{i // 100:02}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05}.bin").write_bytes(i.to_bytes(4, "little") * (1 + i % 50))
    client = _v4(client_factory, "lea", server.address)
    run = client.run([top])
    assert run.returncode == 0, run.stderr
    kinds = [e["event"] for e in run.events]
    assert kinds.count("connected") == 1 and "connection_retry" not in kinds
    assert kinds.count("file_verified") == 10_000
    assert _tree(_own(server, client) / "many") == _tree(top)
    # read while the server runs: its registry is SQLite in WAL mode, readable alongside
    with sqlite3.connect(f"file:{server.data_dir / 'eft.sqlite3'}?mode=ro", uri=True) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM files_v4").fetchone()
    assert rows == 10_000


def test_a_file_that_changes_while_it_is_read_is_reported_and_not_stored(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    top = tmp_path / "live"
    top.mkdir()
    (top / "steady.txt").write_bytes(b"steady")
    # A file of /proc says it is empty and reads as more: it changes as it is read,
    # every time (the same test as a file written to while it is sent).
    (top / "status").symlink_to("/proc/self/status")
    client = _v4(client_factory, "lea", server.address)
    run = client.run([top], "--follow-symlinks")
    assert run.returncode == ExitCode.FILE_CHANGED == 11, run.stderr
    assert "changed while being sent" in run.stderr
    assert [e["file"] for e in run.events if e["event"] == "file_changed"] == ["live/status"]
    assert (_own(server, client) / "live" / "steady.txt").read_bytes() == b"steady"
    assert not (_own(server, client) / "live" / "status").exists()


def test_version_3_refuses_a_folder_in_words(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    top = tmp_path / "flat"
    top.mkdir()
    (top / "a.txt").write_bytes(b"a")
    client = client_factory("max", server.address)
    client.protocol = 3
    run = client.run([top])
    assert run.returncode == ExitCode.USAGE, run.stderr
    assert "is a folder: version 3 stores flat names only" in run.stderr
