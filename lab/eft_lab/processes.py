"""Starting eft processes on 127.0.0.1 and finding the port each one bound.

Every process is given port 0 and reports the port it bound in a JSON line
(``{"event": "listening", "port": N}``); its output goes to a file, so a chatty process
never blocks on a full pipe. Used by ``eft-lab`` and by the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """An ``eft-server`` on 127.0.0.1.

    By default the server binds port 0 itself and reports the port. With ``hold_port``
    this object keeps the port for the life of the test, across restarts: it reserves the
    port with a socket bound with SO_REUSEPORT and never listening (no other program can
    bind it, and the kernel gives it to no outgoing connection), and for each server it
    starts binds a listening socket beside the reservation and hands it over
    (``--listen-fd``). While no server runs, connections are refused, as after a real
    stop. ``release()`` gives the port back.
    """

    data_dir: Path
    log_path: Path
    args: tuple[str, ...] = ()
    hold_port: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    metrics_port: int | None = None
    reservation: socket.socket | None = None
    #: Variables added to the server's environment (tests: the file-system hook).
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> ServerProcess:
        self.starts += 1
        log = self.log_path.with_suffix(f".{self.starts}.log")
        self.current_log = log
        listener = self._listener() if self.hold_port else None
        if listener is not None:
            where = ["--listen-fd", str(listener.fileno())]
            inherited: tuple[int, ...] = (listener.fileno(),)
        else:
            where, inherited = ["--host", "127.0.0.1", "--port", "0"], ()
        command = [
            sys.executable,
            "-m",
            "eft_server",
            *where,
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *self.args,
        ]
        try:
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**clean_env(), **self.env},
                    cwd=self.data_dir.parent,
                    pass_fds=inherited,
                    # Its own process group: a Ctrl-C meant for the lab (or pytest) does
                    # not stop the server before the lab has read its last figures.
                    start_new_session=True,
                )
        finally:
            if listener is not None:
                listener.close()  # the server's now: it closes when the server stops
        listening = wait_for_listening(self.proc, log, "eft-server")
        self.port = int(listening["port"])
        self.metrics_port = listening.get("metrics_port")
        return self

    def _listener(self) -> socket.socket:
        if self.reservation is None:
            self.reservation = socket.socket()
            self.reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.reservation.bind(("127.0.0.1", 0))
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        listener.bind(self.reservation.getsockname())
        listener.listen(4096)
        return listener

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_ports(self) -> list[int]:
        """Its metrics endpoint, as a list: the lab treats one server and several
        replicas (eft_lab.replicas) alike."""
        return [] if self.metrics_port is None else [self.metrics_port]

    @property
    def files_dirs(self) -> list[Path]:
        return [self.data_dir / "files"]

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

    def restart(self, sig: int = signal.SIGTERM) -> ServerProcess:
        """Stop (SIGTERM, or ``sig``) and start again on the same port, as a user
        restarting the service."""
        if self.reservation is None:
            raise RuntimeError(
                "restarting on the same port needs ServerProcess(hold_port=True): "
                "a port given back can be taken by another process before the restart"
            )
        self.stop(sig)
        return self.start()

    def release(self) -> None:
        """Give the held port back (after the last stop)."""
        if self.reservation is not None:
            self.reservation.close()
            self.reservation = None

    def peak_rss(self) -> int:
        """The largest resident set the server has had since it started (the kernel's
        VmHWM): no sampling can miss a short peak."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/PID/status (not Linux?)")

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
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,  # the lab stops it, not the terminal's Ctrl-C
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
