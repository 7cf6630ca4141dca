"""Starting eft processes on 127.0.0.1 and finding the port each one bound.

Every process is given port 0 and reports the port it bound in a JSON line
(``{"event": "listening", "port": N}``); its output goes to a file, so a chatty process
never blocks on a full pipe. Used by ``eft-lab`` and by the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

START_TIMEOUT = 20.0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_port(proc: subprocess.Popen[bytes], log: Path, what: str) -> int:
    return int(wait_for_listening(proc, log, what)["port"])


def wait_for_listening(proc: subprocess.Popen[bytes], log: Path, what: str) -> dict[str, Any]:
    """The process's ``listening`` record, once it has written one."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for record in read_json_lines(log):
            if record.get("event") == "listening":
                return record
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start in {START_TIMEOUT} s:\n{log.read_text()}")


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line still being written
    return records


@dataclass
class ServerProcess:
    data_dir: Path
    log_path: Path
    args: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    metrics_port: int | None = None
    #: Variables added to the server's environment (tests: the file-system hook).
    env: dict[str, str] = field(default_factory=dict)

    def start(self, port: int = 0) -> ServerProcess:
        self.starts += 1
        log = self.log_path.with_suffix(f".{self.starts}.log")
        self.current_log = log
        command = [
            sys.executable,
            "-m",
            "eft_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *self.args,
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**clean_env(), **self.env},
                cwd=self.data_dir.parent,
            )
        listening = wait_for_listening(self.proc, log, "eft-server")
        self.port = int(listening["port"])
        self.metrics_port = listening.get("metrics_port")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port, as a user restarting the service."""
        port = self.port
        self.stop()
        return self.start(port)

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def logs(self) -> list[dict[str, Any]]:
        return read_json_lines(self.current_log)

    def stored(self, client_id_hex: str, name: str) -> Path:
        return self.data_dir / "files" / client_id_hex / name


@dataclass
class LabClientProcess:
    """An ``eft-lab-client`` sending generated files in a loop, with its metrics port."""

    workdir: Path
    name: str
    args: tuple[str, ...] = ()
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    protocol: int = 3

    def start(self, server: str) -> LabClientProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "client.log"
        command = [
            sys.executable,
            "-m",
            "eft_lab.load_client",
            "--server",
            server,
            "--name",
            self.name,
            "--workdir",
            str(self.workdir),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            "0",
            *self.args,
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )
        self.metrics_port = wait_for_port(self.proc, self.log_path, f"eft-lab-client {self.name}")
        return self

    def stop_sending(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> bool:
        """True once the client has finished its last file (it may linger for metrics)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r.get("event") == "stopped" for r in read_json_lines(self.log_path)):
                return True
            if self.proc is None or self.proc.poll() is not None:
                return True
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
