"""What the compose tests share: a compose project on our engine, polling with a bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .engine import Engine, EngineError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "docker-compose.yml", Path(__file__).with_name("compose.ci.yml"))
DASHBOARD = ROOT / "monitoring/grafana/dashboards/eft-lab.json"

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = probe()
        except (OSError, EngineError, ValueError) as exc:  # not up yet
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(1)


@cache
def host_pip_index() -> str:
    """The host's pip index URL (environment, then pip's configuration), if it is a URL a
    container can use; passed to the builds so they use the index the host uses."""
    url = os.environ.get("PIP_INDEX_URL", "")
    if not url:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        url = done.stdout.strip() if done.returncode == 0 else ""
    return url if url.startswith(("http://", "https://")) else ""


@dataclass
class Lab:
    engine: Engine
    #: ``--profile`` arguments given to every compose command.
    profiles: tuple[str, ...] = ()
    #: The compose file's knobs (EFT_LAB_SERVER, ...) for this lab; others take defaults.
    knobs: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600) -> str:
        env = {
            key: value
            for key, value in self.engine.env.items()
            if not key.startswith(("EFT_", "GRAFANA_"))  # the compose file's knobs: defaults
        }
        env.update(self.knobs)
        env["EFT_PIP_INDEX_URL"] = host_pip_index()
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        done = subprocess.run(
            [self.engine.docker, "compose", *files, *self.profiles, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(
                f"docker compose {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """``docker inspect`` of the project's running containers (of one service)."""
        ids = self.compose("ps", "-q", *([service] if service else [])).split()
        if not ids:
            return []
        found: list[dict[str, Any]] = json.loads(self.engine.run("inspect", *ids).stdout)
        return found

    def ip(self, container: dict[str, Any]) -> str:
        networks = container["NetworkSettings"]["Networks"]
        address: str = networks["eft-lab_default"]["IPAddress"]
        return address

    def published(self, service: str, port: int) -> str:
        address = self.compose("port", service, str(port)).strip()
        assert address.startswith("127.0.0.1:"), f"{service}:{port} published on {address}"
        return address

    def prometheus(self, path: str, **params: str) -> Any:
        url = f"http://{self.published('prometheus', 9090)}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prometheus("query", query=expr)["result"]
        return result

    def exec(self, container: dict[str, Any], *command: str) -> str:
        return self.engine.run("exec", container["Id"], *command).stdout

    def client_outcomes(self) -> dict[str, dict[str, float]]:
        """instance -> outcome -> files, as Prometheus last scraped them."""
        table: dict[str, dict[str, float]] = {}
        for series in self.query('eft_client_transfers_total{job="eft-client"}'):
            labels = series["metric"]
            table.setdefault(labels["instance"], {})[labels["outcome"]] = float(series["value"][1])
        return table


def healthy(lab: Lab) -> dict[str, str]:
    """container name -> health (or state, for a container without a HEALTHCHECK)."""
    return {
        c["Name"].lstrip("/"): c["State"].get("Health", {}).get("Status", c["State"]["Status"])
        for c in lab.containers()
    }
