"""HAProxy (Debian's ``haproxy``) in front of eft-server replicas: its configuration from
deploy/haproxy/eft.cfg, the process started and stopped by its PID, and its runtime
API (the stats socket) read for each replica's state."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "eft.cfg"
START_TIMEOUT = 20.0


class HAProxyMissing(RuntimeError):
    """No ``haproxy`` program (``apt-get install haproxy``)."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise HAProxyMissing("haproxy is not installed (apt-get install haproxy)")
    return found


def render(bind: str, replicas: dict[str, str], stats_socket: Path) -> str:
    """The template with the frontend's address and one ``server`` line per replica
    (name: its ``host:proxy-port``)."""
    if not TEMPLATE.is_file():  # an installed eft has no deploy/ (as no dashboards)
        raise RuntimeError(f"no HAProxy template at {TEMPLATE}: run from a checkout of eft")
    servers = "\n".join(f"    server {name} {address}" for name, address in replicas.items())
    text = TEMPLATE.read_text(encoding="utf-8")
    return (
        text.replace("{stats_socket}", str(stats_socket))
        .replace("{bind}", bind)
        .replace("{servers}", servers)
    )


@dataclass
class HAProxyProcess:
    """``haproxy -db`` (foreground) on ``bind``, its files under ``run_dir``. With
    ``listener``, a socket already listening, HAProxy serves on it (``bind fd@N``): no
    port is chosen here and given back for another program to take first."""

    run_dir: Path
    bind: str
    replicas: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    listener: socket.socket | None = None

    @classmethod
    def on_any_port(cls, run_dir: Path, replicas: dict[str, str]) -> HAProxyProcess:
        listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        host, port = listener.getsockname()[:2]
        front = cls(run_dir, f"{host}:{port}", replicas, listener=listener)
        return front

    @property
    def address(self) -> str:
        return self.bind

    @property
    def stats_socket(self) -> Path:
        return self.run_dir / "haproxy.sock"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "haproxy.cfg"

    def start(self) -> HAProxyProcess:
        program = find_haproxy()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        bind = self.bind if self.listener is None else f"fd@{self.listener.fileno()}"
        inherited = () if self.listener is None else (self.listener.fileno(),)
        self.config_path.write_text(render(bind, self.replicas, self.stats_socket), "utf-8")
        check = subprocess.run(
            [program, "-c", "-f", str(self.config_path)],
            capture_output=True,
            check=False,
            pass_fds=inherited,
        )
        if check.returncode != 0:
            said = check.stdout.decode() + check.stderr.decode()
            raise RuntimeError(f"haproxy refuses its configuration:\n{said}")
        log = self.run_dir / "haproxy.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [program, "-db", "-f", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=inherited,
                start_new_session=True,  # the lab's Ctrl-C is for the lab, which stops it
            )
        if self.listener is not None:
            self.listener.close()  # HAProxy's now
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"haproxy exited with {code}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not start in {START_TIMEOUT} s")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def command(self, line: str) -> str:
        """One command on the runtime API, its whole answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each replica's status as HAProxy's checks see it (UP, DOWN, ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        states: dict[str, str] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "eft_replicas" and row.get("svname") in self.replicas:
                states[row["svname"]] = row["status"].split()[0]
        return states

    def wait_for_states(self, wanted: dict[str, str], timeout: float = 30.0) -> dict[str, str]:
        """Until the checks have brought each named replica to its state; the
        states seen last either way."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name) == state for name, state in wanted.items()):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
