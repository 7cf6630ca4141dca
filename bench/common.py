"""What every part of the bench shares: settings, a work directory, processes, figures."""

from __future__ import annotations

import compileall
import contextlib
import fcntl
import importlib
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
#: Where the report goes; ``BENCH_RESULTS`` elsewhere (the bench's own test does).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")
MiB = 1 << 20
GiB = 1 << 30
#: The largest file version 3 carries: sizes are u32 and the ciphertext is padded.
V3_MAX_FILE = (1 << 32) - 17
#: Version 4's sizes are u64: the big-file figure sends a real 4 GiB file.
V4_BIG_FILE = 4 * GiB


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass
class Settings:
    quick: bool
    runs: int
    file_size: int
    big_file_size: int
    big_file_size_v4: int
    concurrency: tuple[int, ...]
    load_file_size: int
    workdir: Path

    @classmethod
    def from_env(cls) -> Settings:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        runs = _env_int("BENCH_RUNS", 1 if quick else 3)
        file_size = _env_int("BENCH_SIZE_MIB", 256 if quick else 1024) * MiB
        big = V3_MAX_FILE if not quick else 1 * GiB
        big_v4 = V4_BIG_FILE if not quick else 1 * GiB
        if os.environ.get("BENCH_BIG_MIB"):
            big = big_v4 = _env_int("BENCH_BIG_MIB", 0) * MiB
        concurrency = (10, 100) if quick else (10, 100, 1000)
        if os.environ.get("BENCH_CLIENTS"):
            concurrency = tuple(int(n) for n in os.environ["BENCH_CLIENTS"].split(","))
        return cls(
            quick=quick,
            runs=max(1, runs),
            file_size=file_size,
            big_file_size=big,
            big_file_size_v4=big_v4,
            concurrency=concurrency,
            load_file_size=MiB,
            workdir=pick_workdir(file_size, max(big, big_v4)),
        )


def pick_workdir(file_size: int, big_file_size: int) -> Path:
    """A RAM-backed directory when it has room (both ends of a transfer write there, so
    the disk is out of the comparison for every tool); ``BENCH_DIR`` overrides. Named
    after this process: the bench removes it at the end, and two benches run at once
    (``make bench`` beside ``bench.compare``) must not remove each other's files."""
    name = f"eft-bench-{os.getpid()}"
    if os.environ.get("BENCH_DIR"):
        return Path(os.environ["BENCH_DIR"]) / name
    need = 2 * max(file_size, big_file_size) + 2 * GiB
    shm = Path("/dev/shm")  # noqa: S108 - the bench's own throwaway files
    if shm.is_dir() and shutil.disk_usage(shm).free > need:
        return shm / name
    return Path(tempfile.gettempdir()) / name


def raise_nofile(limit: int = 65536) -> None:
    """Raise the open-file limit (as root the hard limit too): 1000 clients need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, limit)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write_random_file(path: Path, size: int, seed: int = 3) -> Path:
    """``size`` pseudo-random bytes: incompressible, so no tool gains from compression."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            piece = min(left, 16 * MiB)
            out.write(rng.randbytes(piece))
            left -= piece
    return path


def compile_bytecode() -> None:
    """Compile eft's modules to bytecode, as installing a package does. The editable
    install runs from the source tree, and where PYTHONDONTWRITEBYTECODE is set (as on
    this project's machines) every eft process would otherwise compile them again at
    start-up: ~80 ms per client run, which no installed client pays."""
    for package in ("eft_protocol", "eft_server", "eft_client"):
        module = importlib.import_module(package)
        assert module.__file__ is not None
        compileall.compile_dir(Path(module.__file__).parent, quiet=1)


def bench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def python() -> str:
    return sys.executable


@dataclass(frozen=True)
class CpuTimes:
    """User and system CPU seconds of a process, read in one call (two calls could see
    different clock ticks, and a total read apart from its system part could be smaller
    than it); and those of its first thread, whose id is the PID: the eft server's
    event loop, which no other thread can relieve of its own work (issue 22)."""

    user: float
    system: float
    first_thread: float = 0.0

    @classmethod
    def of(cls, pid: int) -> CpuTimes:
        process = psutil.Process(pid)
        times = process.cpu_times()
        first = next((t for t in process.threads() if t.id == pid), None)
        first_thread = float(first.user_time + first.system_time) if first else 0.0
        return cls(float(times.user), float(times.system), first_thread)


@dataclass
class Usage:
    """What a process used between two points: CPU seconds (user + system, and the
    system part: the kernel's receiving and writing; and its first thread's, the
    server's event loop) and its peak resident set."""

    cpu_seconds: float
    peak_rss: int
    system_seconds: float = 0.0
    first_thread_seconds: float = 0.0

    @classmethod
    def between(cls, start: CpuTimes, end: CpuTimes, peak_rss: int) -> Usage:
        # Each part is differenced on its own and then added, so that the total is never
        # below its system part, even by a rounding error (sum of differences, not
        # difference of sums).
        user = max(0.0, end.user - start.user)
        system = max(0.0, end.system - start.system)
        first_thread = max(0.0, end.first_thread - start.first_thread)
        return cls(user + system, peak_rss, system, min(first_thread, user + system))


def peak_rss(pid: int) -> int:
    """VmHWM: the largest resident set the process has had since it started."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process the bench started, by its PID: TERM, then KILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def run_timed(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
) -> float:
    """Wall seconds of one command; raises if it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, env=env, timeout=timeout, cwd=cwd, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exited with {done.returncode}: "
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Samples:
    """Every run of one figure; the report shows the median."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return median(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "runs": self.values}


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    print(f"-- {title}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    print(f"   {title}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Finished:
    """One command's wall seconds (its start to its exit), the wall clock at both ends
    (the clock eft's events are stamped with) and what it printed."""

    seconds: float
    launched: float
    exited: float
    output: str
    #: User + system CPU of the command and the children it waited for (scp's ssh).
    cpu_seconds: float = float("nan")


def run_captured(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    stdin: bytes | None = None,
    terminal: bool = False,
) -> Finished:
    """Run one command, time it and keep its output; raises if it fails.

    ``terminal``: its stdout is a pseudo-terminal it controls, for tools that show their
    progress (and its final rate) only there (OpenSSH's scp and sftp); the terminal is
    read by a thread, so a chatty tool never blocks on it.
    """
    reader: threading.Thread | None = None
    chunks: list[bytes] = []
    master = slave = -1
    if terminal:
        master, slave = os.openpty()

        def read_terminal() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last holder of the other end has gone
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=read_terminal, daemon=True)
    children_before = children_cpu()
    launched = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=slave if terminal else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=terminal,
        # The terminal becomes the controlling one: OpenSSH draws its meter only for the
        # terminal's foreground process group.
        preexec_fn=_take_terminal if terminal else None,  # noqa: PLW1509
    )
    if terminal:
        os.close(slave)
        assert reader is not None
        reader.start()
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        elapsed = time.perf_counter() - started
        exited = time.time()
        if reader is not None:
            reader.join(10)
            os.close(master)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exited with {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    cpu = children_cpu() - children_before
    text = b"".join(chunks).decode(errors="replace") if terminal else out.decode(errors="replace")
    return Finished(elapsed, launched, exited, text + err.decode(errors="replace"), cpu)


def children_cpu() -> float:
    """User + system CPU of this process's children that have ended and been waited for
    (the bench waits for one client command at a time, while its servers keep running)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _take_terminal() -> None:
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)
