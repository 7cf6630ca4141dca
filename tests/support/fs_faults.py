"""Driving the file-system hook (``fshook/sitecustomize.py``) of a real server process,
and a blocking version-4 peer that sees each answer the moment it arrives."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eft_protocol.codes import RESPONSE_HEADER
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import client as v4
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.records import CHUNK, chunk_count
from tests.support.processes import ServerProcess

HOOK_DIR = Path(__file__).parent / "fshook"


@dataclass
class Fault:
    op: str  # open, write, sync, dirsync, rename, unlink, mkdir, registry
    path: str = "*"  # a glob of the path under the data directory
    errno: str | None = "ENOSPC"  # None: only slow it down
    after: int = 0  # matching calls let through first
    times: int = 1
    delay: float = 0.0
    hold: str | None = None  # a FIFO: the call waits until the test closes it (``Held``)


class FsHook:
    """The hook's configuration and call log for one server's data directory."""

    def __init__(self, base: Path, data_dir: Path) -> None:
        self.config = base / "fshook.json"
        self.log = base / "fs-calls.jsonl"
        self.data_dir = data_dir
        self._version = 0
        self.arm()

    def env(self) -> dict[str, str]:
        path = [str(HOOK_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(path), "EFT_TEST_FSHOOK": str(self.config)}

    def arm(self, *faults: Fault) -> None:
        """Replace the faults (none: disarm); the server sees it at its next call."""
        self._version += 1
        config = {
            "root": str(self.data_dir),
            "log": str(self.log),
            "faults": [fault.__dict__ for fault in faults],
        }
        temp = self.config.with_suffix(".tmp")
        temp.write_text(json.dumps(config))
        stamp = self._version * 1_000_000_000  # a new mtime each time, however fast
        os.utime(temp, ns=(stamp, stamp))
        os.replace(temp, self.config)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def mark(self) -> int:
        """How many calls are logged so far: ``calls()[mark:]`` are the later ones."""
        return len(self.calls())

    def faults_fired(self, since: int = 0) -> list[dict[str, Any]]:
        return [call for call in self.calls()[since:] if call["op"] == "fault"]


class Held:
    """A FIFO for ``Fault(hold=...)``: ``wait`` returns once a matching call of the server
    is held on it (the call opened it), ``let_go`` lets that call go on. Events, not
    time: a server that never makes the call fails ``wait`` after ``timeout``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._writer: Any = None

    def wait(self, timeout: float = 120.0) -> None:
        opened: list[Any] = []
        # Kept open until let_go: its closing is the event the held call waits for.
        opener = threading.Thread(target=lambda: opened.append(open(self.path, "wb")))  # noqa: SIM115
        opener.daemon = True  # left blocked only if the test has failed already
        opener.start()
        opener.join(timeout)
        assert opened, f"no call was held on {self.path} within {timeout} s"
        self._writer = opened[0]

    def let_go(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def hooked_server(base: Path, *args: str) -> tuple[ServerProcess, FsHook]:
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    hook = FsHook(base, data)
    server = ServerProcess(data, base / "server.log", args=args, env=hook.env())
    return server.start(), hook


class V4Peer:
    """A version-4 client over a blocking socket, one request at a time."""

    def __init__(
        self, address: str, name: str, timeout: float = 30.0, *, key: KeyPair | None = None
    ) -> None:
        """Registers a new key, or logs in (827) with ``key``."""
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.key = key or KeyPair.generate()
        self.session = v4.ClientSessionV4(
            self.key, name, register=key is None, check_server=lambda _print: None
        )
        self._buffer = bytearray()
        self._data, self._chunks, self._start = b"", 0, 1
        self.sock.sendall(self.session.start())
        self.sock.sendall(b"".join(self.receive().send))
        self.welcome = self.receive()

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buffer += data
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def receive(self) -> v4.ReplyV4:
        header = self._exactly(RESPONSE_HEADER.size)
        return self.session.receive(header, self._exactly(self.session.payload_size(header)))

    def send_file(
        self,
        name: str,
        data: bytes,
        *,
        upload_id: bytes = bytes(16),
        before_verdict: Callable[[], None] | None = None,
    ) -> None:
        """Metadata, chunks, 900; returns once 1604 arrives. Raises ``v4.RefusedByServer``
        on a 1607. ``before_verdict`` runs when 1603 is in, before 900 goes out."""
        self.start_file(name, data, upload_id=upload_id)
        self.finish_file(before_verdict=before_verdict)

    def start_file(
        self, name: str, data: bytes, *, upload_id: bytes = bytes(16), resume_at: int = 1
    ) -> None:
        """The metadata, and its answer (where to start: ``resume_at``): the upload is
        open on the server, and the server does nothing more for it until
        ``finish_file`` (or ``send_chunks``)."""
        self.sock.sendall(self.session.begin_file(name, len(data), upload_id))
        start = self.receive().start_chunk
        assert start == resume_at, (start, resume_at)
        self._data, self._chunks, self._start = data, chunk_count(len(data)), start

    def send_chunks(self, count: int) -> None:
        """The next ``count`` chunks, with no answer to wait for."""
        for index in range(self._start, self._start + count):
            self.sock.sendall(self._chunk(index))
        self._start += count

    def finish_file(self, before_verdict: Callable[[], None] | None = None) -> None:
        """The chunks, 1603, 900 and 1604."""
        for index in range(self._start, self._chunks + 1):
            self.sock.sendall(self._chunk(index))
        self.session.file_hashed(file_digest(self._data).digest())
        verdict = self.receive()  # 1603
        assert verdict.digest_ok
        if before_verdict is not None:
            before_verdict()
        self.sock.sendall(b"".join(verdict.send))
        assert self.receive().file_verified  # 1604

    def _chunk(self, index: int) -> bytes:
        return self.session.chunk_record(index, self._data[(index - 1) * CHUNK : index * CHUNK])

    def close(self) -> None:
        self.sock.close()
