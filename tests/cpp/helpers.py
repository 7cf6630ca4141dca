"""Helpers for the C++ client's end-to-end tests: finding the two builds and running the
binary. Servers, proxies and the Python client come from ``tests/support``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CPP_DIR = REPO / "client" / "cpp"
BUILDS = {
    "release": CPP_DIR / "build" / "eft-client-cpp",
    "asan": CPP_DIR / "build-asan" / "eft-client-cpp",
}
SANITIZER_ENV = {
    # exitcode 99: a sanitizer report must not pass for one of the client's own exit codes.
    "ASAN_OPTIONS": "exitcode=99:abort_on_error=0:detect_leaks=1:strict_string_checks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=99",
}
CLIENT_TIMEOUT = 120

# Exit codes shared with the Python client.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_REFUSED = 4
EXIT_INTEGRITY = 5
EXIT_SERVER = 6
EXIT_IDENTITY = 9
EXIT_INTERRUPTED = 130


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_client(binary: Path, args: list[str], cwd: Path, timeout: float = CLIENT_TIMEOUT) -> Run:
    # The per-user directory (docs/IDENTITY.md) inside the test's own folder, never the
    # home of whoever runs the tests.
    env = dict(os.environ, **SANITIZER_ENV, XDG_CONFIG_HOME=str(cwd / ".config-home"))
    proc = subprocess.run(
        [str(binary), *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in run.stderr, run.describe()
    return run


def server_unavailable_reason() -> str | None:
    """The shared fixtures run ``python -m eft_server`` and ``python -m eft_lab...``."""
    for module in ("eft_server", "eft_lab.corrupting_proxy"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return f"{module} is not importable (pip install -e .)"
    return None


def python_client_unavailable_reason() -> str | None:
    if importlib.util.find_spec("eft_client") is None:
        return "eft_client is not importable (pip install -e .)"
    return None


def write_file(path: Path, size: int, seed: int = 1) -> bytes:
    data = bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(size))
    path.write_bytes(data)
    return data


def read_me_info(directory: Path) -> tuple[str, str, str]:
    lines = (directory / "me.info").read_text().splitlines()
    return lines[0], lines[1], "".join(lines[2:])
