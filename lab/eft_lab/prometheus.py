"""A throwaway Prometheus for the native lab: config, process, and queries.

It scrapes the server and every lab client at fixed loopback ports, so the same
dashboard expressions that Grafana shows in the Docker lab can be evaluated here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def find_binary() -> str | None:
    return shutil.which("prometheus")


def write_config(
    path: Path,
    server_port: int | list[int],
    client_ports: list[int],
    interval: float,
    rules: Path | None = None,
    *,
    attacker_ports: list[int] | None = None,
) -> None:
    # Several: the replicas of eft-lab --servers N, each scraped (one instance each).
    server_ports = [server_port] if isinstance(server_port, int) else server_port
    # JSON is valid YAML, and needs no YAML library.
    config: dict[str, Any] = {
        "global": {"scrape_interval": f"{interval:g}s", "evaluation_interval": f"{interval:g}s"},
        "scrape_configs": [
            {
                "job_name": "eft-server",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in server_ports]}],
            },
            {
                "job_name": "eft-client",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in client_ports]}],
            },
        ],
    }
    if attacker_ports:
        config["scrape_configs"].append(
            {
                "job_name": "eft-attacker",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in attacker_ports]}],
            }
        )
    if rules is not None:
        config["rule_files"] = [str(rules)]
    path.write_text(json.dumps(config, indent=2))


#: Prometheus's log line once its web listener is bound (``address=127.0.0.1:PORT``).
_LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


class Prometheus:
    """A Prometheus process on 127.0.0.1. It binds port 0 and its log says which port
    it got: no port is chosen here and given back for someone else to take first."""

    def __init__(self, binary: str, workdir: Path, config: Path) -> None:
        self.port = 0
        self.log_path = workdir / "prometheus.log"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            "--web.listen-address=127.0.0.1:0",
            "--web.enable-lifecycle",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C on the lab must not stop it before the
                # lab's last queries (the lab stops it by its PID).
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: see {self.log_path}")
            if not self.port:
                found = _LISTENING.search(self.log_path.read_text(errors="replace"))
                if found is None:
                    time.sleep(0.05)
                    continue
                self.port = int(found.group(1))
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout} s: see {self.log_path}")

    def alert_rules(self) -> list[dict[str, Any]]:
        """The alerting rules Prometheus has loaded, with their state."""
        with urllib.request.urlopen(f"{self.url}/api/v1/rules?type=alert", timeout=10) as response:  # noqa: S310
            body = json.load(response)
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; returns the result vector (empty when there is no data)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


#: The dashboard row whose series only an attacker (``eft-lab --attack``, the compose
#: profile ``attack``) exports.
ATTACKS_ROW = "Attacks"


def dashboard_queries(dashboard: Path, attacks: bool = False) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included, with each
    template variable ($instance, ...) set to "All", as Grafana opens the dashboard.
    The attacks row's only with ``attacks``: without an attacker it has no data."""
    board = json.loads(dashboard.read_text())
    every = {
        variable["name"]: variable.get("allValue") or ".*"
        for variable in board.get("templating", {}).get("list", [])
    }
    queries: list[tuple[str, str]] = []

    def expand(expr: str) -> str:
        for name, value in every.items():
            expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
        return expr

    row = ""

    def visit(panels: list[dict[str, Any]]) -> None:
        nonlocal row
        for panel in panels:
            if panel.get("type") == "row":
                row = panel.get("title", "")
            if row == ATTACKS_ROW and not attacks:
                continue
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((panel.get("title", "?"), expand(target["expr"])))
            visit(panel.get("panels", []))

    visit(board.get("panels", []))
    return queries
