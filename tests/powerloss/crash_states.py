"""Crash states a power loss could leave, from a recorded sequence of operations.

The model is POSIX's, as strict as ALICE's (OSDI 2014) "no assumptions" file system: an
operation survives a power loss only if a sync that completed before the loss covers it;
any other operation issued before the loss may or may not survive, independently of the
others. A sync of a file covers the earlier writes and truncations of that file; a sync
of a directory covers the earlier creations, renames into it and unlinks in it (a new
directory's own entry needs its parent synced). A rename survives whole or not at all,
and moves the inode it was issued on (its new name needs no old one on disk).

For each crash point (after every operation: every prefix), the states generated are:
everything issued survived (the prefix itself); only what was synced survived; each
unsynced operation lost alone (the others survived: the reorderings); each unsynced
write torn, only its first half on disk. Equal states are kept once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .trace import Op

#: Files whose content no crash state needs: the lock (re-taken at start) and SQLite's
#: shared-memory index (its first user truncates and rebuilds it from the WAL).
IGNORED = ("eft.lock", "eft.sqlite3-shm")


def _parent(path: str) -> str:
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent


@dataclass
class _Fs:
    """Names to inodes, inodes to bytes (directories are names without content)."""

    names: dict[str, int] = field(default_factory=dict)
    data: dict[int, bytearray] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {""})
    _next: int = 0

    def apply(self, op: Op, inode: int | None, torn: bool = False) -> None:
        if op.kind == "create":
            if op.path not in self.names and _parent(op.path) in self.dirs:
                assert inode is not None
                self.names[op.path] = inode
                self.data.setdefault(inode, bytearray())
        elif op.kind == "mkdir":
            if _parent(op.path) in self.dirs:
                self.dirs.add(op.path)
        elif op.kind in ("write", "truncate"):
            if inode is None:
                return
            content = self.data.setdefault(inode, bytearray())
            if op.kind == "truncate":
                del content[op.size :]
                content.extend(bytes(max(0, op.size - len(content))))
                return
            data = op.data[: len(op.data) // 2] if torn else op.data
            end = op.offset + len(data)
            if len(content) < op.offset:
                content.extend(bytes(op.offset - len(content)))
            content[op.offset : end] = data
        elif op.kind == "rename":
            # The new name points at the inode the server renamed, whether or not the
            # old name itself ever reached the disk (its data was synced by inode).
            self.names.pop(op.path, None)
            if inode is not None and _parent(op.target) in self.dirs:
                self.names[op.target] = inode
                self.data.setdefault(inode, bytearray())
        elif op.kind == "unlink":
            self.names.pop(op.path, None)
            self.dirs.discard(op.path)

    def files(self) -> dict[str, bytes]:
        return {
            name: bytes(self.data[inode])
            for name, inode in self.names.items()
            if not name.endswith(IGNORED)
        }


@dataclass(frozen=True)
class CrashState:
    point: int  # operations issued before the loss
    how: str  # "prefix", "synced only", "lost #n", "torn #n"
    files: dict[str, bytes]
    dirs: frozenset[str]
    answers: tuple[bytes, ...]  # what each connection had been sent, in their order

    def key(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        digest.update("\0".join(sorted(self.dirs)).encode())
        for answer in self.answers:
            digest.update(hashlib.sha256(answer).digest())
        return digest.hexdigest()

    def build(self, directory: Path) -> None:
        for name in sorted(self.dirs):
            (directory / name).mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = directory / name
            if path.parent.is_dir():  # a file in a directory that did not survive: gone
                path.write_bytes(content)
                path.chmod(0o600)  # as the server made it (a server.key any wider is refused)


def _inodes(ops: list[Op]) -> list[int | None]:
    """Which inode each operation acts on, as the server saw it (all issued, in order)."""
    fs = _Fs()
    result: list[int | None] = []
    next_inode = 0
    for op in ops:
        inode: int | None = None
        if op.kind == "create":
            inode = fs.names.get(op.path)
            if inode is None:
                next_inode += 1
                inode = next_inode
        elif op.kind in ("write", "truncate", "rename"):
            inode = fs.names.get(op.path)
        result.append(inode)
        fs.apply(op, inode)
    return result


def _covered(ops: list[Op], inodes: list[int | None]) -> list[int]:
    """For each operation, the index of the first sync that makes it durable (or a
    number past the end when none does)."""
    never = len(ops) + 1
    covered = [never] * len(ops)
    fs_names: dict[str, int] = {}
    for index, op in enumerate(ops):  # sync targets: a file's inode, or a directory name
        if op.kind == "create" and inodes[index] is not None:
            fs_names.setdefault(op.path, inodes[index])  # type: ignore[arg-type]
        elif op.kind == "rename" and op.path in fs_names:
            fs_names[op.target] = fs_names.pop(op.path)
        elif op.kind == "unlink":
            fs_names.pop(op.path, None)
        if op.kind != "sync":
            continue
        synced_inode = fs_names.get(op.path)
        for earlier in range(index):
            if covered[earlier] != never:
                continue
            before = ops[earlier]
            if before.kind in ("write", "truncate") and inodes[earlier] is not None:
                hit = inodes[earlier] == synced_inode
            elif before.kind in ("create", "mkdir", "unlink"):
                hit = _parent(before.path) == op.path and synced_inode is None
            elif before.kind == "rename":
                hit = _parent(before.target) == op.path and synced_inode is None
            else:
                hit = False
            if hit:
                covered[earlier] = index
    return covered


def coalesce(ops: list[Op]) -> list[Op]:
    """Writes that continue the one just before on the same file become one write (a
    torn write then covers a cut anywhere in the run); shared-memory writes go."""
    merged: list[Op] = []
    for op in ops:
        if op.path.endswith(IGNORED) and op.kind in ("write", "truncate"):
            continue
        last = merged[-1] if merged else None
        if (
            op.kind == "write"
            and last is not None
            and last.kind == "write"
            and last.path == op.path
            and last.offset + len(last.data) == op.offset
        ):
            merged[-1] = Op("write", op.path, offset=last.offset, data=last.data + op.data)
        else:
            merged.append(op)
    return merged


def crash_states(ops: list[Op], points: set[int] | None = None) -> Iterator[CrashState]:
    """Every crash state, or those of the crash ``points`` given."""
    inodes = _inodes(ops)
    covered = _covered(ops, inodes)
    seen: set[str] = set()
    changes = [i for i, op in enumerate(ops) if op.kind not in ("sync", "answer")]
    for point in range(len(ops) + 1):
        if points is not None and point not in points:
            continue
        issued = [i for i in changes if i < point]
        unsynced = [i for i in issued if covered[i] >= point]
        answers: dict[str, bytearray] = {}
        for op in ops[:point]:
            if op.kind == "answer":
                answers.setdefault(op.socket, bytearray()).extend(op.data)
        sent = tuple(bytes(stream) for stream in answers.values())  # connections in order
        variants: list[tuple[str, set[int], int | None]] = [
            ("prefix", set(), None),
            ("synced only", set(unsynced), None),
        ]
        for lost in unsynced:
            variants.append((f"lost #{lost} {ops[lost].kind} {ops[lost].path}", {lost}, None))
            if ops[lost].kind == "write" and len(ops[lost].data) > 1:
                variants.append((f"torn #{lost} {ops[lost].path}", set(), lost))
        for how, dropped, torn in variants:
            fs = _Fs()
            for i in issued:
                if i not in dropped:
                    fs.apply(ops[i], inodes[i], torn=i == torn)
            state = CrashState(point, how, fs.files(), frozenset(fs.dirs), sent)
            key = state.key()
            if key not in seen:
                seen.add(key)
                yield state
