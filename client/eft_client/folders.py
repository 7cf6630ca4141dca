"""Folders to send (version 4): the files and empty folders of each tree, named by their
relative paths, and what a run already stored on a server.

``expand`` walks each folder argument: regular files are sent under
``<folder name>/<relative path>``, a folder with nothing to send in it is sent as an
empty folder (a metadata record flagged DIRECTORY, docs/PROTOCOL-v4.md section 8.1),
symbolic links and special files (fifos, sockets, devices) are skipped with a warning
unless ``--follow-symlinks`` (then a link is sent as what it points to; a link that
leads back into a folder being walked is skipped, so a loop ends). Every name is
checked as the server checks it (``paths``), before anything is sent.

``VerifiedFiles`` is the client's record of the files of folders a server verified
(``verified-v4.log`` in the state directory): a run again after a cut skips those whose
path, size, modification time and stored name are unchanged, and sends the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol.v4.paths import BadPath, normalise

from .errors import ConfigError
from .progress import Reporter

VERIFIED_LOG = "verified-v4.log"


@dataclass
class Tree:
    """What the arguments name, in order: files (local path, stored name), and empty
    folders (stored names). ``from_folders`` holds the files found by walking, with the
    size the walk saw (its ``lstat``: no file is looked at twice before it is read)."""

    files: list[Path] = field(default_factory=list)
    names: dict[Path, str] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)
    from_folders: dict[Path, int] = field(default_factory=dict)
    skipped: int = 0


def expand(arguments: Sequence[Path], reporter: Reporter, *, follow_symlinks: bool = False) -> Tree:
    """Files and folders of the command line; raises ``ConfigError`` for a name the
    server would refuse (with the local path), before anything is sent."""
    tree = Tree()
    for argument in arguments:
        if argument.is_dir():
            top = argument.resolve().name or "root"
            _walk(argument, top, tree, reporter, follow=follow_symlinks, walking={_key(argument)})
        else:
            tree.files.append(argument)
    return tree


def _key(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _checked(name: str, local: Path) -> str:
    try:
        return normalise(name)
    except BadPath as exc:
        raise ConfigError(f"{local}: {exc} (docs/PROTOCOL-v4.md section 6.3)") from None


def _walk(
    folder: Path,
    name: str,
    tree: Tree,
    reporter: Reporter,
    *,
    follow: bool,
    walking: set[tuple[int, int]],
) -> bool:
    """Add what ``folder`` holds; True if anything (a file or a folder) was added."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        raise ConfigError(f"cannot read {folder}: {exc.strerror or exc}") from None
    added = False
    for entry in entries:
        path = Path(entry.path)
        stored = f"{name}/{entry.name}"
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                if not follow:
                    _skip(tree, reporter, path, "a symbolic link (--follow-symlinks sends it)")
                    continue
                info = entry.stat(follow_symlinks=True)
            mode = info.st_mode
        except OSError as exc:
            _skip(tree, reporter, path, f"cannot be read: {exc.strerror or exc}")
            continue
        if stat.S_ISDIR(mode):
            key = _key(path)
            if key in walking:
                _skip(tree, reporter, path, "a link back into a folder being sent (a loop)")
                continue
            walking.add(key)
            added = _walk(path, stored, tree, reporter, follow=follow, walking=walking) or added
            walking.discard(key)
        elif stat.S_ISREG(mode):
            tree.names[path] = _checked(stored, path)
            tree.files.append(path)
            tree.from_folders[path] = info.st_size
            added = True
        else:
            _skip(tree, reporter, path, "not a regular file (a fifo, socket or device)")
    if not added:  # nothing in it is sent: the folder itself is
        tree.directories.append(_checked(name, folder))
    return True


def _skip(tree: Tree, reporter: Reporter, path: Path, reason: str) -> None:
    tree.skipped += 1
    reporter.event("skipped", path=str(path), reason=reason)


class VerifiedFiles:
    """Files of folders a server verified, appended as they are (written in batches:
    ``flush``, at the latest when the run ends); read once per run. A lost tail (a
    crash) only means those files are sent again."""

    #: Verified files held before they are written out together.
    BATCH = 256

    def __init__(self, path: Path, server: str) -> None:
        self.path, self.server = path, server
        self._known: set[tuple[str, ...]] | None = None
        self._unwritten: list[tuple[str, ...]] = []

    def _entry(
        self, file: Path, name: str, as_read: tuple[int, int] | None = None
    ) -> tuple[str, ...]:
        size, mtime_ns = as_read or _size_and_mtime(file)
        return (self.server, str(file.absolute()), str(size), str(mtime_ns), name)

    def _load(self) -> set[tuple[str, ...]]:
        if self._known is None:
            self._known = set()
            with contextlib.suppress(OSError):
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError, TypeError):
                        self._known.add(tuple(json.loads(line)))
        return self._known

    def done(self, file: Path, name: str) -> bool:
        if not self._load():  # nothing verified yet: no file to look at (issue 25)
            return False
        try:
            return self._entry(file, name) in self._load()
        except OSError:
            return False

    def add(self, file: Path, name: str, as_read: tuple[int, int] | None = None) -> None:
        """``as_read``: the size and modification time the file was sent with (a file
        changed since then is not the one verified); else they are read now."""
        with contextlib.suppress(OSError):
            entry = self._entry(file, name, as_read)
            self._load().add(entry)
            self._unwritten.append(entry)
        if len(self._unwritten) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Append the verified files not yet written, in one write."""
        entries, self._unwritten = self._unwritten, []
        if not entries:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log:
                log.write("".join(json.dumps(list(entry)) + "\n" for entry in entries))


def _size_and_mtime(file: Path) -> tuple[int, int]:
    info = file.stat()
    return info.st_size, info.st_mtime_ns
