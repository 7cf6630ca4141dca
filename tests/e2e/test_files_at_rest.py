"""What the server leaves on disk is its own: the data directory 0700, every directory
in it 0700, every file 0600, whatever umask it was started with; a ``server.key`` that
others can read is refused at start-up (exit 7), as sshd refuses such a host key."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_server.partial_uploads import PartialStore
from eft_server.storage import FileStore
from tests.e2e.test_server_startup import failure, start
from tests.support.processes import ClientDir, ServerProcess, write_random_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: what the server makes must not depend on it."""
    previous = os.umask(0o000)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_everything_the_server_makes_is_private(
    open_umask: None,
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory()
    source = write_random_file(tmp_path / "report.pdf", 100_000, seed=3)
    v3 = client_factory("alice", server.address)
    assert v3.run([source]).returncode == 0
    v4 = client_factory("vera", server.address)
    v4.protocol = 4
    assert v4.run([source]).returncode == 0

    data = server.data_dir
    made = sorted(data.rglob("*"))
    names = {path.name for path in made}
    assert {"eft.sqlite3", "eft.sqlite3-wal", "eft.sqlite3-shm", "server.key"} <= names
    assert (data / "files" / v3.client_id_hex / "report.pdf").is_file()
    assert (data / "v4" / "files" / v4.client_id_hex / "report.pdf").is_file()
    assert mode(data) == 0o700
    wrong = {
        str(path.relative_to(data)): oct(mode(path))
        for path in made
        if mode(path) != (0o700 if path.is_dir() else 0o600)
    }
    assert wrong == {}


def test_an_existing_open_data_directory_is_narrowed(open_umask: None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    server = ServerProcess(data, tmp_path / "server.log").start()
    try:
        assert mode(data) == 0o700
    finally:
        assert server.stop() == 0


def test_uploads_in_progress_are_private(open_umask: None, tmp_path: Path) -> None:
    """The .part files of both versions, while they are being written."""
    v3 = FileStore(tmp_path / "data").open_upload(b"\x01" * 16, "a.bin")
    v3.write(b"secret")
    v4 = PartialStore(tmp_path / "data").open(b"\x02" * 16, b"\x03" * 16, "b.bin", 10)
    try:
        for path in (v3.temp_path, v4.part, v4.sidecar):
            assert path.exists() and mode(path) == 0o600, path
        for directory in (v3.temp_path.parent, v4.part.parent, v4.part.parent.parent):
            assert mode(directory) == 0o700, directory
    finally:
        v3.discard()
        v4.discard()


@pytest.mark.parametrize("key_mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_a_server_key_others_can_read_is_refused(tmp_path: Path, key_mode: int) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = data / "server.key"
    key.write_text("Dbm+GDa0iSKMkq4Vao2BmzsAIEfTxdEVxFFyF7v6f2s=\n")
    key.chmod(key_mode)
    code, records = start(tmp_path, "--host", "127.0.0.1", "--port", "0", "--data-dir", "data")
    assert code == 7
    error = failure(records)
    assert error["event"] == "server_key_exposed"
    assert error["mode"] == f"{key_mode:04o}"
    assert "too open" in error["message"] and "chmod 600" in error["message"]
    key.chmod(0o600)  # the fix the message names is enough
    server = ServerProcess(data, tmp_path / "server.log").start()
    assert server.stop() == 0
