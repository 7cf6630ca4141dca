"""The server's own files in its data directory: the lock that keeps a second server out,
and the version-4 key that clients pin. Focused tests of ``data_lock`` and ``server_key``
(the end-to-end view is in tests/faults/test_data_dir_lock.py and tests/e2e)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from eft_server.data_lock import LOCK_FILE, DataDirLock, DataDirLocked
from eft_server.server_key import KEY_FILE, load_or_create
from eft_server.startup import ServerKeyExposed


def test_the_lock_keeps_a_second_holder_out_until_released(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DataDirLock(data)  # makes the directory
    assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert stat.S_IMODE((data / LOCK_FILE).stat().st_mode) == 0o600
    with pytest.raises(DataDirLocked) as refused:
        DataDirLock(data)
    assert f"pid {os.getpid()}" in str(refused.value)
    assert str(data) in str(refused.value)
    first.release()
    first.release()  # twice is harmless
    second = DataDirLock(data)
    second.release()


def test_a_key_is_made_once_private_and_read_back_the_same(tmp_path: Path) -> None:
    made = load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == made.private
    assert not path.with_name(KEY_FILE + ".tmp").exists()
    again = load_or_create(tmp_path)
    assert (again.private, again.public) == (made.private, made.public)


def test_a_readable_key_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o640)
    with pytest.raises(ServerKeyExposed) as refused:
        load_or_create(tmp_path)
    assert "0640" in str(refused.value)
    assert refused.value.exit_code == 7


@pytest.mark.parametrize(
    ("content", "why"),
    [("not base64 at all!", "not Base64"), (base64.b64encode(bytes(31)).decode(), "32-byte")],
)
def test_a_damaged_key_is_an_error_never_a_new_key(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(content + "\n")
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match=why):
        load_or_create(tmp_path)
    assert path.read_text() == content + "\n", "the damaged key is left for its owner"
