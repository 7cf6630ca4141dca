"""``client_tree``: a relative path stored under the client's folder, folders made and
synced, and nothing followed out through a symbolic link, even one planted between the
check and the commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_server import client_tree


def _source(tmp_path: Path, data: bytes = b"data") -> Path:
    source = tmp_path / "upload.part"
    source.write_bytes(data)
    return source


def test_a_nested_name_makes_its_folders(tmp_path: Path) -> None:
    root = tmp_path / "client"
    stored = client_tree.store(root, "photos/2024/img 1.jpg", _source(tmp_path))
    assert stored == root / "photos" / "2024" / "img 1.jpg"
    assert stored.read_bytes() == b"data"
    assert (root / "photos").stat().st_mode & 0o777 == 0o700


def test_a_link_planted_after_the_check_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "client", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    assert client_tree.in_the_way(root, "photos/x.jpg") is None
    (root / "photos").symlink_to(outside)  # between the check and the commit
    with pytest.raises(client_tree.NameInTheWay):
        client_tree.store(root, "photos/x.jpg", _source(tmp_path))
    assert list(outside.iterdir()) == []


def test_a_link_at_the_files_own_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    root, outside = tmp_path / "client", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "x.txt").symlink_to(outside / "victim.txt")
    stored = client_tree.store(root, "x.txt", _source(tmp_path))
    assert not stored.is_symlink() and stored.read_bytes() == b"data"
    assert list(outside.iterdir()) == []


def test_a_folder_at_the_files_name_is_in_the_way(tmp_path: Path) -> None:
    root = tmp_path / "client"
    (root / "x").mkdir(parents=True)
    assert client_tree.in_the_way(root, "x") == "x is a folder on the server"
    with pytest.raises(client_tree.NameInTheWay):
        client_tree.store(root, "x", _source(tmp_path))
