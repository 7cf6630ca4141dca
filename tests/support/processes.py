"""Client and proxy processes for end-to-end tests; the server comes from ``eft_lab``."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eft_lab.processes import ServerProcess, clean_env, read_json_lines, wait_for_port

__all__ = [
    "ClientDir",
    "ClientRun",
    "ProxyProcess",
    "ServerProcess",
    "finish",
    "paused",
    "read_json_lines",
]


@dataclass
class ClientRun:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]


@dataclass
class ClientDir:
    """A client's working directory: transfer.info, me.info, priv.key."""

    path: Path
    name: str
    server: str
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The version-3 tests speak version 3 explicitly; the client's default is 4.
    protocol: int = 3

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def command(self, files: Sequence[Path | str], *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "eft_client",
            "--server",
            self.server,
            "--name",
            self.name,
            "--config-dir",
            str(self.path),
            "--json",
            "--protocol",
            str(self.protocol),
            *args,
            *[str(f) for f in files],
        ]

    def run(self, files: Sequence[Path | str], *args: str, timeout: float = 300) -> ClientRun:
        done = subprocess.run(
            self.command(files, *args),
            capture_output=True,
            stdin=subprocess.DEVNULL,  # never the terminal a person ran the tests from
            timeout=timeout,
            env={**clean_env(), **self.extra_env},
            check=False,
        )
        return _client_run(done.returncode, done.stdout, done.stderr)

    def start(self, files: Sequence[Path | str], *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(files, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**clean_env(), **self.extra_env},
        )

    @property
    def client_id_hex(self) -> str:
        me_info = "me.info" if self.protocol == 3 else "me4.info"
        return (self.path / me_info).read_text().splitlines()[1].strip()


@contextlib.contextmanager
def paused(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop a process (SIGSTOP) for the duration of the block, then let it go on: what a
    test does meanwhile happens, for that process, at one instant of its work."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> ClientRun:
    stdout, stderr = proc.communicate(timeout=timeout)
    return _client_run(proc.returncode, stdout, stderr)


def _client_run(code: int, stdout: bytes, stderr: bytes) -> ClientRun:
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    return ClientRun(code, events, stderr.decode(errors="replace"))


@dataclass
class ProxyProcess:
    target: str
    corrupt: str
    log_path: Path
    extra: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        command = [
            sys.executable,
            "-m",
            "eft_lab.corrupting_proxy",
            "--target",
            self.target,
            "--corrupt",
            self.corrupt,
            *self.extra,
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )
        self.port = wait_for_port(self.proc, self.log_path, "eft-proxy")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def write_random_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes, written in pieces (never all in memory)."""
    import random  # noqa: PLC0415 - only the tests that make files need it

    rng = random.Random(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            piece = min(left, 1 << 20)
            out.write(rng.randbytes(piece))
            left -= piece
    return path
