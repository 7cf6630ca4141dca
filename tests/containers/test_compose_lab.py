"""The Docker lab as users run it: ``docker compose up --build --wait``, for real.

A Docker engine of our own (``engine.py``), the base images built from Debian packages
(``bases.py``: no registry is reachable), then docker-compose.yml with CI's one override
file (``compose.ci.yml``) and the ``cpp`` and ``attack`` profiles. What a user would look
at is checked through the real interfaces: container health, Prometheus's HTTP API
(targets, every dashboard query, the attacker's series), each client's logs and identity
files. The tests run in file order on
one lab; every wait polls for a condition with a bound, none sleeps a fixed time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from eft_lab.prometheus import dashboard_queries

from . import bases
from .engine import Engine, EngineError
from .lab import DASHBOARD, Lab, healthy, wait_for

PYTHON_CLIENTS = ("client", "client-v4")
#: The C++ client beside the Python ones, and the attacker (README, "The attack lab").
PROFILES = ("--profile", "cpp", "--profile", "attack")
#: The attack profile's scenarios (docker-compose.yml's default EFT_ATTACK_SCENARIOS).
ATTACKS = ("steal-key", "alter-crc", "replay", "hijack", "record-flood")
#: Cold: the bases and every image built (~5 min measured); warm: the layer cache.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Engine() as engine:
        lab = Lab(engine, PROFILES)
        started = time.monotonic()
        built = bases.ensure_all(engine, bases.LAB)
        print(f"bases: built {built or 'none'} in {time.monotonic() - started:.0f} s")
        lab.compose("down", "-v", "--remove-orphans")  # what an interrupted run left
        try:
            started = time.monotonic()
            lab.compose("up", "--build", "--wait", "--detach", timeout=1500)
            print(f"compose up --build --wait: {time.monotonic() - started:.0f} s")
            yield lab
        finally:
            try:
                lab.compose("down", "-v", "--remove-orphans")
                # The cache keeps a day of superseded layers (warm builds), not more.
                engine.run("image", "prune", "--force", "--filter", "until=24h")
            except EngineError as exc:
                print(exc)


# ---------------------------------------------------------------------------- checks


def all_targets_up(lab: Lab, expected_clients: int) -> dict[str, list[str]] | None:
    """job -> scrape URLs, once every active target is up and the clients all found."""
    active = lab.prometheus("targets", state="active")["activeTargets"]
    by_job: dict[str, list[str]] = {}
    for target in active:
        if target["health"] != "up":
            return None
        by_job.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
    if len(by_job.get("eft-client", [])) != expected_clients or not by_job.get("eft-server"):
        return None
    return by_job


def client_addresses(lab: Lab) -> set[str]:
    return {f"{lab.ip(c)}:9101" for s in PYTHON_CLIENTS for c in lab.containers(s)}


def every_replica_verified(lab: Lab, at_least: dict[str, float] | None = None) -> bool:
    """Every Python replica has verified files (more than ``at_least`` says, per instance)."""
    outcomes = lab.client_outcomes()
    addresses = client_addresses(lab)
    floor = at_least or {}
    return all(outcomes.get(a, {}).get("verified", 0) > floor.get(a, 0) for a in addresses)


def cpp_log(lab: Lab) -> str:
    return lab.compose("logs", "--no-color", "client-cpp")


# ---------------------------------------------------------------------------- the tests


def test_every_service_is_up_and_healthy(lab: Lab) -> None:
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in lab.containers()}
    assert services == {"server", "client", "client-v4", "client-cpp", "prometheus", "attacker"}
    states = healthy(lab)
    assert states, "no containers"
    # The Python images have a HEALTHCHECK (the clients': they have verified a file);
    # Prometheus, the C++ client and the attacker have none: running is all they can say.
    wrong = {name: state for name, state in states.items() if state not in ("healthy", "running")}
    assert wrong == {}, f"not healthy: {wrong}"
    for service in ("server", *PYTHON_CLIENTS):
        for container in lab.containers(service):
            assert container["State"]["Health"]["Status"] == "healthy", service


def test_prometheus_scrapes_the_server_and_every_client_replica(lab: Lab) -> None:
    replicas = len(lab.containers("client")) + len(lab.containers("client-v4"))
    assert replicas == 5, "3 v3 and 2 v4 clients by default"
    jobs = wait_for("every target up", lambda: all_targets_up(lab, replicas))
    assert sorted(jobs["eft-client"]) == sorted(client_addresses(lab))
    assert jobs["eft-server"] == ["server:9100"]


def test_every_replica_verifies_files_and_none_fail(lab: Lab) -> None:
    wait_for("every Python replica's verified files", lambda: every_replica_verified(lab))
    outcomes = lab.client_outcomes()
    for address in client_addresses(lab):
        assert outcomes[address]["failed"] == 0, f"{address}: {outcomes[address]}"
    # The C++ client (no metrics): its loop logs "done" per file sent, "exit N" on failure.
    wait_for("the C++ client's first file", lambda: "done: 1 file(s) sent" in cpp_log(lab))
    assert not re.search(r"\bexit \d+", cpp_log(lab)), cpp_log(lab)


def test_every_dashboard_query_returns_data(lab: Lab) -> None:
    """What Grafana would show: every panel's expression, against the real Prometheus."""
    queries = dashboard_queries(DASHBOARD)
    assert len(queries) > 10

    def empty() -> list[str] | None:
        missing = [f"{title}: {expr}" for title, expr in queries if not lab.query(expr)]
        return None if missing else ["ok"]

    try:
        wait_for("data for every dashboard query", empty, timeout=240)
    except pytest.fail.Exception:
        missing = [f"{title}: {expr}" for title, expr in queries if not lab.query(expr)]
        pytest.fail(f"dashboard queries without data: {missing}")


def attack_series(lab: Lab, metric: str) -> dict[tuple[str, str], float]:
    """(scenario, version) -> value of one of the attacker's counters, as last scraped."""
    return {
        (series["metric"]["scenario"], series["metric"]["version"]): float(series["value"][1])
        for series in lab.query(f'{metric}{{job="eft-attacker"}}')
    }


def test_the_attacks_win_on_version_3_and_fail_on_version_4(lab: Lab) -> None:
    """The attack profile as a user runs it: the attacker's outcomes on the dashboard's
    series, each scenario on version 3 then 4, while the load clients keep working (the
    replicas' test above: none failed, the record flood included). Before the restarts
    and ``down`` below, which would cut the attacks short."""
    logs = lambda: lab.compose("logs", "--no-color", "attacker")  # noqa: E731
    wait_for("the attacker's scenarios", lambda: '"event": "done"' in logs(), timeout=600)
    outcomes = [
        json.loads(line.split("|", 1)[1]) for line in logs().splitlines() if '"outcome"' in line
    ]
    assert {(o["scenario"], o["version"]) for o in outcomes} >= {
        (scenario, version)
        for scenario in ATTACKS
        for version in (3, 4)
        if (scenario, version) != ("record-flood", 3)
    }, outcomes
    read = wait_for(
        "the attacker's last figures scraped",
        lambda: (
            (found := attack_series(lab, "eft_attack_files_read_total"))
            and found.get(("hijack", "3")) == 1
            and found
        ),
    )
    altered = attack_series(lab, "eft_attack_files_altered_total")
    refused = attack_series(lab, "eft_attack_attempts_refused_total")
    legit_failures = attack_series(lab, "eft_attack_legit_failures_total")
    assert read[("steal-key", "3")] == 1 and read[("steal-key", "4")] == 0
    assert read[("hijack", "4")] == 0
    assert altered[("alter-crc", "3")] == 1 and altered[("alter-crc", "4")] == 0
    assert altered[("replay", "3")] == 1 and altered[("replay", "4")] == 0
    for scenario in ("steal-key", "alter-crc", "replay", "hijack"):
        assert refused[(scenario, "4")] == 1, (scenario, refused)
    assert legit_failures[("record-flood", "4")] == 0


def test_scaling_clients_adds_targets_that_verify(lab: Lab) -> None:
    lab.compose("up", "--wait", "--detach", "--no-recreate", "--scale", "client=4")
    assert len(lab.containers("client")) == 4
    jobs = wait_for("6 client targets up", lambda: all_targets_up(lab, 6))
    assert sorted(jobs["eft-client"]) == sorted(client_addresses(lab))
    wait_for("the new replica's verified files", lambda: every_replica_verified(lab))


def test_a_restarted_client_carries_on(lab: Lab) -> None:
    # The version-4 client: before the fix it drew a new name while me4.info stayed.
    for service in PYTHON_CLIENTS:
        container = lab.containers(service)[0]
        identity = "me4.info" if service == "client-v4" else "me.info"
        before = lab.exec(container, "head", "-n", "2", identity)
        lab.engine.run("restart", container["Id"], timeout=120)

        def restarted_and_healthy(cid: str = container["Id"]) -> dict[str, Any] | None:
            now: dict[str, Any] = json.loads(lab.engine.run("inspect", cid).stdout)[0]
            ok = now["State"]["Running"] and now["State"]["Health"]["Status"] == "healthy"
            return now if ok else None

        now = wait_for(f"{service} healthy after its restart", restarted_and_healthy)
        assert lab.exec(now, "head", "-n", "2", identity) == before, "a new identity"
        address = f"{lab.ip(now)}:9101"

        def verified_again(address: str = address) -> bool:
            counts = lab.client_outcomes().get(address, {})
            # A restarted process starts its counters at 0: these are the new run's.
            return counts.get("verified", 0) > 0 and counts.get("failed", 1) == 0

        wait_for(f"{service} verifying after its restart", verified_again)


def test_a_restarted_server_keeps_its_clients(lab: Lab) -> None:
    registered = sum(float(s["value"][1]) for s in lab.query("eft_registered_clients"))
    assert registered >= 7, "6 Python replicas and the C++ client"
    before = {a: c.get("verified", 0) for a, c in lab.client_outcomes().items()}
    started = lab.containers("server")[0]["State"]["StartedAt"]
    lab.compose("restart", "server", timeout=120)
    server = lab.containers("server")[0]
    assert server["State"]["StartedAt"] != started
    wait_for(
        "the server healthy again",
        lambda: healthy(lab).get(server["Name"].lstrip("/")) == "healthy",
    )
    # Every replica verifies new files; nobody had to register again (registry on the
    # volume: version 3's reconnects and version 4's pinned key both still work).
    wait_for("every replica verifying again", lambda: every_replica_verified(lab, before))
    wait_for(
        "the server's registry count scraped again",
        lambda: lab.query("eft_registered_clients"),
    )
    after = sum(float(s["value"][1]) for s in lab.query("eft_registered_clients"))
    assert after == registered
    cpp_before = cpp_log(lab).count("done: 1 file(s) sent")
    wait_for(
        "the C++ client sending after the server's restart",
        lambda: cpp_log(lab).count("done: 1 file(s) sent") > cpp_before,
    )


def test_the_cpp_client_stops_cleanly(lab: Lab) -> None:
    (container,) = lab.containers("client-cpp")
    lab.compose("stop", "client-cpp", timeout=120)
    state = json.loads(lab.engine.run("inspect", container["Id"]).stdout)[0]["State"]
    assert not state["Running"]
    assert state["ExitCode"] == 0, f"client-cpp exited {state['ExitCode']} on stop"


def test_down_leaves_nothing(lab: Lab) -> None:
    lab.compose("down", "-v", "--remove-orphans")
    label = "label=com.docker.compose.project=eft-lab"
    assert lab.engine.run("ps", "-aq", "--filter", label).stdout.split() == []
    assert lab.engine.run("volume", "ls", "-q", "--filter", label).stdout.split() == []
    assert lab.engine.run("network", "ls", "-q", "--filter", label).stdout.split() == []
