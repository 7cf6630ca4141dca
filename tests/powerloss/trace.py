"""Recording a server's file-system calls with strace, and reading them back as operations.

``record`` runs ``eft_server`` under ``strace -f -y -xx`` (every buffer in full, as hex)
while a test drives it, and ``parse`` turns the trace into the operations a crash-state
model needs, in the order they completed: creating, writing, truncating, renaming,
unlinking files and directories under the data directory, syncing them, and the
server's answers on its sockets (to know what a client had been told at each point).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from eft_lab.processes import clean_env, wait_for_listening

CALLS = (
    "openat,open,creat,write,pwrite64,writev,ftruncate,truncate,rename,renameat,renameat2,"
    "unlink,unlinkat,mkdir,mkdirat,rmdir,fsync,fdatasync,close,sendto,sendmsg,read,lseek"
)
_HEX = re.compile(r"((?:\\x[0-9a-f]{2})+)")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)(?:<([^>]*)>)?")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_FD = re.compile(r"^(-?\d+|AT_FDCWD)<((?:\\x[0-9a-f]{2})*)>")


@dataclass
class Op:
    """One operation that changes (or syncs) what is stored, or an answer sent."""

    kind: str  # create, mkdir, write, truncate, rename, unlink, sync, answer
    path: str = ""  # relative to the data directory
    target: str = ""  # rename: the new path
    offset: int = 0
    data: bytes = b""
    size: int = 0  # truncate: the new size
    socket: str = ""  # answer: which connection


class Recording:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.trace = base / "strace.txt"
        self.log = base / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> str:
        self.data_dir.mkdir(parents=True)  # exists before: the model starts from it
        command = [
            "strace", "-f", "-y", "-xx", "-qq", "-s", str(1 << 24), "-o", str(self.trace),
            "-e", f"trace={CALLS}",
            sys.executable, "-m", "eft_server", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(self.data_dir), "--log-format", "json", "--shutdown-grace", "5",
        ]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )
        self.port = int(wait_for_listening(self.proc, self.log, "eft-server")["port"])
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM to the server itself (its pid is in its lock file), then let strace end."""
        assert self.proc is not None
        pid = int((self.data_dir / "eft.lock").read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        self.proc.wait(60)

    def operations(self) -> list[Op]:
        return parse(self.trace.read_text(), str(self.data_dir))


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def _fd_path(argument: str) -> tuple[str, str]:
    """The fd's number and its path (``-y``) from ``12</path>``."""
    match = _FD.match(argument.strip())
    if match is None:
        return argument.strip(), ""
    return match.group(1), _unhex(match.group(2)).decode(errors="replace")


def _path_at(args: list[str], index: int) -> str:
    """The path in argument ``index``; for the ``*at`` calls a relative one is resolved
    against the directory descriptor before it (``-y`` shows its path): the server
    makes v4 folders and renames into them through descriptors (client_tree.py)."""
    strings = _STRING.findall(args[index]) if index < len(args) else []
    path = _unhex(strings[0]).decode(errors="replace") if strings else ""
    if path.startswith("/") or index == 0:
        return path
    _fd, base = _fd_path(args[index - 1])
    return f"{base.rstrip('/')}/{path}" if base else path


def _split(arguments: str) -> list[str]:
    """Top-level comma-separated arguments (strings hold no commas: all are hex)."""
    parts, depth, current = [], 0, []
    for char in arguments:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current).strip())
    return parts


def _completed_calls(text: str) -> list[tuple[str, str, int]]:
    """(name, arguments, result) of each call, in the order the calls returned."""
    pending: dict[str, str] = {}
    calls = []
    for raw in text.splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        pid, rest = match.groups()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(2)
        call = _CALL.match(rest)
        if call is not None:
            calls.append((call.group(1), call.group(2), int(call.group(3))))
    return calls


def parse(text: str, data_dir: str) -> list[Op]:
    root = data_dir.rstrip("/") + "/"
    offsets: dict[str, int] = {}  # fd -> where its next write() lands (open, read, lseek)
    ops: list[Op] = []

    def inside(path: str) -> str | None:
        return path[len(root) :] if path.startswith(root) else None

    for name, arguments, result in _completed_calls(text):
        args = _split(arguments)
        if result < 0:
            continue
        if name in ("openat", "open", "creat"):
            path = _path_at(args, 1 if name == "openat" else 0)
            flags = args[2] if name == "openat" else args[1]
            offsets[str(result)] = 0
            relative = inside(path)
            if relative is None:
                continue
            if "O_CREAT" in flags or name == "creat":
                ops.append(Op("create", relative))
            if "O_TRUNC" in flags or name == "creat":
                ops.append(Op("truncate", relative, size=0))
        elif name in ("mkdir", "mkdirat"):
            path = _path_at(args, 1 if name == "mkdirat" else 0)
            if (relative := inside(path)) is not None:
                ops.append(Op("mkdir", relative))
        elif name in ("write", "pwrite64", "writev"):
            fd, path = _fd_path(args[0])
            data = b"".join(_unhex(s) for s in _STRING.findall(arguments))[:result]
            if path.startswith("socket:"):
                ops.append(Op("answer", socket=path, data=data))
                continue
            relative = inside(path)
            if name == "pwrite64":
                offset = int(args[-1])
            else:
                offset = offsets.get(fd, 0)
                offsets[fd] = offset + result
            if relative is not None and not relative.endswith(" (deleted)"):
                ops.append(Op("write", relative, offset=offset, data=data))
        elif name in ("sendto", "sendmsg"):
            _fd, path = _fd_path(args[0])
            data = b"".join(_unhex(s) for s in _STRING.findall(arguments))[:result]
            ops.append(Op("answer", socket=path, data=data))
        elif name == "ftruncate":
            _fd, path = _fd_path(args[0])
            if (relative := inside(path)) is not None:
                ops.append(Op("truncate", relative, size=int(args[1])))
        elif name in ("rename", "renameat", "renameat2"):
            at = name != "rename"
            paths = [_path_at(args, 1 if at else 0), _path_at(args, 3 if at else 1)]
            source, target = inside(paths[0]), inside(paths[1])
            if source is not None and target is not None:
                ops.append(Op("rename", source, target=target))
        elif name in ("unlink", "unlinkat", "rmdir"):
            path = _path_at(args, 1 if name == "unlinkat" else 0)
            if (relative := inside(path)) is not None:
                ops.append(Op("unlink", relative))
        elif name in ("fsync", "fdatasync"):
            _fd, path = _fd_path(args[0])
            relative = inside(path) if path != data_dir.rstrip("/") else ""
            if relative is not None:
                ops.append(Op("sync", relative))
        elif name == "close":
            offsets.pop(args[0].split("<")[0], None)
        elif name == "read":  # moves the position the next write() lands at
            fd, _path = _fd_path(args[0])
            offsets[fd] = offsets.get(fd, 0) + result
        elif name == "lseek":  # returns the new position, whatever it was asked
            fd, _path = _fd_path(args[0])
            offsets[fd] = result
    return ops
