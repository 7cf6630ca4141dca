"""The compose profile "scale" as a user runs it (docs/SCALING.md, "Compose scale profile").

``EFT_LAB_SERVER=haproxy:1256 docker compose --profile scale up --build --wait --scale
replica=3``, on our engine with CI's override (Debian's PostgreSQL and HAProxy, SeaweedFS
from PyPI: ``bases.py``, ``compose.ci.yml``), one v3 and one v4 load client. Checked
through the real interfaces: container health, HAProxy's statistics (CSV), Prometheus's
HTTP API (the replicas' targets, the dashboard's per-replica panels), the load clients'
counters; then a replica is killed while the clients keep verifying files, and ``down
-v`` leaves nothing. The images are the default lab's (test_compose_lab.py) plus the
three bases and the SeaweedFS image. The tests run in file order on one lab; every wait
polls a condition with a bound.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import bases
from .engine import Engine, EngineError
from .lab import DASHBOARD, Lab, healthy, wait_for

REPLICAS = 3
EFT_CLIENT = str(Path(sys.executable).with_name("eft-client"))
PROFILES = ("--profile", "scale")
#: The load clients go through HAProxy (the compose file's knob); one of each version.
KNOBS = {"EFT_LAB_SERVER": "haproxy:1256"}
SCALE = ("--scale", f"replica={REPLICAS}", "--scale", "client=1", "--scale", "client-v4=1")
#: The dashboard's row whose panels show each server replica apart.
REPLICA_ROW = "Server replicas"
#: The single server (no profile) keeps running, idle; its target is this one.
SINGLE_SERVER = "server:9100"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Engine() as engine:
        lab = Lab(engine, PROFILES, KNOBS)
        started = time.monotonic()
        built = bases.ensure_all(engine)
        print(f"bases: built {built or 'none'} in {time.monotonic() - started:.0f} s")
        lab.compose("down", "-v", "--remove-orphans")  # what an interrupted run left
        try:
            started = time.monotonic()
            lab.compose("up", "--build", "--wait", "--detach", *SCALE, timeout=1500)
            print(f"compose --profile scale up --build --wait: {time.monotonic() - started:.0f} s")
            yield lab
        finally:
            try:
                lab.compose("down", "-v", "--remove-orphans")
                engine.run("image", "prune", "--force", "--filter", "until=24h")
            except EngineError as exc:
                print(exc)


# ---------------------------------------------------------------------------- helpers


def replica_addresses(lab: Lab) -> set[str]:
    """The running replicas' scrape addresses (Prometheus's instance label)."""
    return {f"{lab.ip(c)}:9100" for c in lab.containers("replica")}


def haproxy_servers(lab: Lab) -> dict[str, dict[str, str]]:
    """HAProxy's backend slots that hold a replica: name -> its row of ``show stat``."""
    url = f"http://{lab.published('haproxy', 8404)}/stats;csv"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode().lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        row["svname"]: row
        for row in rows
        if row["pxname"] == "eft_replicas"
        and row["svname"] not in ("FRONTEND", "BACKEND")
        and not row["status"].startswith("MAINT")  # a slot no replica's address fills
    }


def up_in_haproxy(lab: Lab) -> int:
    """How many replicas HAProxy sends clients to (checked UP). (Its statistics page
    does not show the slots' addresses.)"""
    return sum(row["status"].startswith("UP") for row in haproxy_servers(lab).values())


def server_targets(lab: Lab) -> dict[str, str]:
    """instance -> health of the eft-server job's active targets."""
    active = lab.prometheus("targets", state="active")["activeTargets"]
    return {
        t["labels"]["instance"]: t["health"] for t in active if t["labels"]["job"] == "eft-server"
    }


def client_counts(lab: Lab) -> dict[str, dict[str, float]]:
    """client service -> outcome -> files, summed over its replicas, as last scraped."""
    services = {f"{lab.ip(c)}:9101": s for s in ("client", "client-v4") for c in lab.containers(s)}
    table: dict[str, dict[str, float]] = {}
    for series in lab.query('eft_client_transfers_total{job="eft-client"}'):
        service = services.get(series["metric"]["instance"])
        if service:
            outcomes = table.setdefault(service, {})
            outcome = series["metric"]["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + float(series["value"][1])
    return table


def replica_row_queries() -> list[tuple[str, str]]:
    """(title, expr) of the panels in the dashboard's row "Server replicas", each
    variable set to All as Grafana opens it."""
    board = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []
    row = ""
    for panel in board["panels"]:
        if panel.get("type") == "row":
            row = panel.get("title", "")
            continue
        if row == REPLICA_ROW:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name in ("instance", "version", "replica"):
                    expr = expr.replace(f"${name}", ".*")
                found.append((panel["title"], expr))
    return found


# ---------------------------------------------------------------------------- the tests


def test_every_service_is_up_and_the_key_made_once(lab: Lab) -> None:
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in lab.containers()}
    expected = {"server", "client", "client-v4", "prometheus", "postgres", "s3", "replica"}
    assert services == expected | {"haproxy"}
    wrong = {name: state for name, state in healthy(lab).items() if state != "healthy"}
    # Prometheus has no HEALTHCHECK: running is all it can say.
    assert all(name.startswith("eft-lab-prometheus") for name in wrong), wrong
    assert len(lab.containers("replica")) == REPLICAS
    ids = lab.compose("ps", "-a", "-q", "server-key").split()
    (key_maker,) = json.loads(lab.engine.run("inspect", *ids).stdout)
    assert key_maker["State"]["ExitCode"] == 0
    # One identity: every replica serves the same key.
    keys = {lab.exec(c, "sha256sum", "/data/server.key") for c in lab.containers("replica")}
    assert len(keys) == 1, keys


def test_haproxy_sends_clients_to_every_replica(lab: Lab, tmp_path: Path) -> None:
    wait_for("HAProxy's checks pass on every replica", lambda: up_in_haproxy(lab) == REPLICAS)
    # A user's client on the host, through the published port: each version sends files
    # in sessions of their own (any replica may take each; v4 pins the one cluster key).
    address = lab.published("haproxy", 1256)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    for version in ("3", "4"):
        config = tmp_path / f"v{version}"
        command = [EFT_CLIENT, "--server", address, "--name", f"host-v{version}"]
        command += ["--protocol", version, "--config-dir", str(config), "--retry-for", "0"]
        for attempt in range(3):
            done = subprocess.run(
                [*command, str(payload)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (version, attempt, done.stdout, done.stderr)


def test_v3_and_v4_clients_verify_files_through_haproxy(lab: Lab) -> None:
    def both_verified() -> dict[str, dict[str, float]] | None:
        counts = client_counts(lab)
        ok = all(counts.get(s, {}).get("verified", 0) > 0 for s in ("client", "client-v4"))
        return counts if ok else None

    counts = wait_for("a verified file from each version's client", both_verified)
    assert counts["client"].get("failed", 0) == 0 and counts["client-v4"].get("failed", 0) == 0
    # Every file came through HAProxy: the replicas took PROXY headers, the idle single
    # server stored nothing, and the replicas' stored files add up to the clients'.
    accepted = lab.query('sum(eft_proxy_headers_total{job="eft-server", result="proxied"})')
    assert accepted and float(accepted[0]["value"][1]) > 0
    single = lab.query(f'eft_transfers_total{{instance="{SINGLE_SERVER}", outcome="verified"}}')
    assert sum(float(s["value"][1]) for s in single) == 0
    by_version = {
        s["metric"]["version"]: float(s["value"][1])
        for s in lab.query(
            'sum by (version) (eft_transfers_total{job="eft-server", outcome="verified",'
            f' instance!="{SINGLE_SERVER}"}})'
        )
    }
    assert by_version.get("3", 0) > 0 and by_version.get("4", 0) > 0, by_version


def test_prometheus_scrapes_every_replica(lab: Lab) -> None:
    wanted = replica_addresses(lab) | {SINGLE_SERVER}
    targets = wait_for(
        "a target up for every replica",
        lambda: (
            (found := server_targets(lab)).keys() == wanted
            and all(h == "up" for h in found.values())
            and found
        ),
    )
    assert len(targets) == REPLICAS + 1


def test_the_dashboards_replica_panels_show_each_replica(lab: Lab) -> None:
    queries = replica_row_queries()
    assert queries, f"no panels in the row {REPLICA_ROW!r}"
    replicas = replica_addresses(lab)

    def missing() -> list[str]:
        """Panels whose query lacks a series for some replica."""
        gaps = []
        for title, expr in queries:
            shown = {s["metric"].get("instance") for s in lab.query(expr)}
            if not replicas <= shown:
                gaps.append(f"{title}: {sorted(replicas - shown)}")
        return gaps

    try:
        wait_for("every replica in every per-replica panel", lambda: not missing(), timeout=240)
    except pytest.fail.Exception:
        pytest.fail(f"per-replica panels without a replica's series: {missing()}")


def test_clients_carry_on_when_a_replica_is_killed(lab: Lab) -> None:
    victim = lab.containers("replica")[0]
    address = lab.ip(victim)
    lab.engine.run("kill", victim["Id"])
    wait_for(
        "HAProxy to stop sending to the killed one", lambda: up_in_haproxy(lab) == REPLICAS - 1
    )
    before = client_counts(lab)

    def verified_again() -> bool:
        now = client_counts(lab)
        return all(
            now.get(s, {}).get("verified", 0) > before[s].get("verified", 0)
            for s in ("client", "client-v4")
        )

    wait_for("both clients verifying files after the kill", verified_again)
    after = client_counts(lab)
    print(f"client counts before the kill's aftermath: {before}, after: {after}")
    for service in ("client", "client-v4"):
        assert after[service].get("failed", 0) == 0, (service, after[service])
    # A killed container stays down (`docker kill` is a manual stop for `unless-stopped`);
    # the two others keep serving. Prometheus stops scraping it: down, then gone once
    # Docker's DNS forgets the name (a stopped container has no record).
    assert len(lab.containers("replica")) == REPLICAS - 1
    wait_for(
        "the killed replica's target down or gone",
        lambda: server_targets(lab).get(f"{address}:9100") != "up",
    )


def test_down_leaves_nothing(lab: Lab) -> None:
    lab.compose("down", "-v", "--remove-orphans")
    label = "label=com.docker.compose.project=eft-lab"
    assert lab.engine.run("ps", "-aq", "--filter", label).stdout.split() == []
    assert lab.engine.run("volume", "ls", "-q", "--filter", label).stdout.split() == []
    assert lab.engine.run("network", "ls", "-q", "--filter", label).stdout.split() == []
