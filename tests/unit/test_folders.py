"""Folders to send (client/eft_client/folders.py), on their own: files named by their
relative paths in order, empty folders as folders, links and special files skipped and
said, a loop ended, a name the server would refuse stopping the run; and the record of
files a server verified, which only an unchanged file matches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from eft_client.errors import ConfigError
from eft_client.folders import VerifiedFiles, expand
from eft_client.progress import Reporter


class Recorder(Reporter):
    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "skipped":
            self.skipped.append((Path(fields["path"]).name, fields["reason"]))


def _tree(root: Path) -> Path:
    top = root / "photos"
    (top / "2026" / "june").mkdir(parents=True)
    (top / "empty" / "inner").mkdir(parents=True)
    (top / "b.jpg").write_bytes(b"b")
    (top / "a.jpg").write_bytes(b"a")
    (top / "2026" / "june" / "c.jpg").write_bytes(b"c")
    return top


def test_files_by_relative_path_in_order_and_empty_folders(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    lone = tmp_path / "lone.txt"
    lone.write_text("x")
    tree = expand([top, lone], Recorder())
    assert [tree.names.get(path) for path in tree.files] == [
        "photos/2026/june/c.jpg",
        "photos/a.jpg",
        "photos/b.jpg",
        None,  # a file argument keeps its own name (the caller's)
    ]
    assert tree.files[-1] == lone and lone not in tree.from_folders
    assert tree.from_folders == {path: path.stat().st_size for path in tree.files[:3]}
    assert tree.directories == ["photos/empty/inner"], "only the innermost empty folder"
    assert tree.skipped == 0


def test_links_and_special_files_are_skipped_and_said(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    os.symlink(top / "a.jpg", top / "link.jpg")
    os.symlink(top, top / "2026" / "back")  # a loop, if followed
    os.mkfifo(top / "pipe")
    reporter = Recorder()
    tree = expand([top], reporter)
    assert sorted(reason.split(" (")[0] for _, reason in reporter.skipped) == [
        "a symbolic link",
        "a symbolic link",
        "not a regular file",
    ]
    assert tree.skipped == 3
    followed = Recorder()
    tree = expand([top], followed, follow_symlinks=True)
    assert "photos/link.jpg" in tree.names.values(), "sent as what it points to"
    assert [name for name, reason in followed.skipped if "loop" in reason] == ["back"]


def test_a_name_the_server_would_refuse_stops_the_run(tmp_path: Path) -> None:
    top = tmp_path / "docs"
    top.mkdir()
    (top / "trail.").write_text("x")  # a name ending in a dot: refused on the server
    with pytest.raises(ConfigError, match="trail"):
        expand([top], Recorder())


def test_only_an_unchanged_file_under_the_same_name_and_server_counts_as_done(
    tmp_path: Path,
) -> None:
    log, file = tmp_path / "state" / "verified-v4.log", tmp_path / "a.txt"
    file.write_text("one")
    verified = VerifiedFiles(log, "host:1")
    assert not verified.done(file, "d/a.txt")
    verified.add(file, "d/a.txt")
    assert not VerifiedFiles(log, "host:1").done(file, "d/a.txt")  # batched, not yet written
    verified.flush()  # at the latest when the run ends
    again = VerifiedFiles(log, "host:1")  # read from the log, as the next run does
    assert again.done(file, "d/a.txt")
    assert not again.done(file, "other/a.txt")
    assert not VerifiedFiles(log, "host:2").done(file, "d/a.txt")
    file.write_text("changed, longer")
    assert not VerifiedFiles(log, "host:1").done(file, "d/a.txt")
    assert not again.done(tmp_path / "gone.txt", "d/gone.txt")


def test_a_damaged_log_line_is_ignored_not_fatal(tmp_path: Path) -> None:
    log, file = tmp_path / "verified-v4.log", tmp_path / "a.txt"
    file.write_text("one")
    written = VerifiedFiles(log, "h:1")
    written.add(file, "a.txt")
    written.flush()
    with log.open("a") as handle:
        handle.write('["h:1", "cut short\n')
    assert VerifiedFiles(log, "h:1").done(file, "a.txt")
