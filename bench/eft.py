"""eft's own processes for the bench: a server started per measurement, the CLI client."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from eft_lab.processes import wait_for_listening

from .common import CpuTimes, Usage, bench_env, peak_rss, python, raise_nofile, stop_pid


@dataclass
class EftServer:
    root: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _cpu_start: CpuTimes | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EftServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "server.log"
        command = [
            python(),
            "-m",
            "eft_server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
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
                env=self.env or bench_env(),
                preexec_fn=raise_nofile,  # noqa: PLW1509 - no threads in the bench yet
            )
        self.port = int(wait_for_listening(self.proc, log, "eft-server")["port"])
        self.mark()
        return self

    def mark(self) -> None:
        """Start counting CPU from here (after start-up)."""
        assert self.proc is not None
        self._cpu_start = CpuTimes.of(self.proc.pid)

    def usage(self) -> Usage:
        assert self.proc is not None
        assert self._cpu_start is not None, "mark() first"
        return Usage.between(self._cpu_start, CpuTimes.of(self.proc.pid), peak_rss(self.proc.pid))

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)

    def drop_files(self) -> None:
        """Remove received files of both versions (keep the registries and the server
        key: clients log in again). Replacing a 1 GiB file would cost the next run."""
        shutil.rmtree(self.data_dir / "files", ignore_errors=True)
        shutil.rmtree(self.data_dir / "v4" / "files", ignore_errors=True)


def client_command(
    server: str,
    name: str,
    config_dir: Path,
    files: list[Path],
    protocol: int = 3,
    *,
    output: str = "--quiet",
) -> list[str]:
    """The CLI client's command line; ``output="--json"`` for its timed events."""
    config_dir.mkdir(parents=True, exist_ok=True)
    return [
        python(),
        "-m",
        "eft_client",
        "--server",
        server,
        "--name",
        name,
        "--config-dir",
        str(config_dir),
        "--protocol",
        str(protocol),
        output,
        *[str(f) for f in files],
    ]
