"""``eft-lab --attack``: the attacker process, and what its scenarios achieved, checked.

The attacker (``eft_lab.attacker``) writes one outcome per scenario and version; this
module checks each one against the files on disk (the attacker's copies, the victims'
files, what the server stored) and against Prometheus, and prints the table: for each
scenario, what it achieved on version 3 and on version 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from eft_protocol.cksum import cksum

from .attacker import SCENARIOS, VERSIONS
from .processes import clean_env, read_json_lines, wait_for_port

#: Scenarios the findings say succeed against our server's version 3. Version 4 resists
#: every one; our server's version 3 resists the floods as well (docs/RELIABILITY.md).
SUCCEED_ON_V3 = {"steal-key", "alter-crc", "replay", "hijack"}


class AttackerProcess:
    """``python -m eft_lab.attacker`` beside the lab, its metrics port and its outcomes."""

    def __init__(self, workdir: Path, scenarios: list[str]) -> None:
        self.workdir, self.scenarios = workdir, scenarios
        self.log_path = workdir / "attacker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self, target: str, fingerprint: str) -> AttackerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "eft_lab.attacker",
            "--target", target, "--server-fingerprint", fingerprint,
            "--scenarios", ",".join(self.scenarios), "--workdir", str(self.workdir),
            "--flood-source", "127.0.0.3", "--metrics-port", "0",
        ]  # fmt: skip
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,  # the lab stops it, not the terminal's Ctrl-C
            )
        self.metrics_port = wait_for_port(self.proc, self.log_path, "the lab's attacker")
        return self

    @property
    def done(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return True
        return any(r.get("event") == "done" for r in read_json_lines(self.log_path))

    def outcomes(self) -> list[dict[str, Any]]:
        path = self.workdir / "outcomes.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def kill(self) -> None:
        """The attacker and what it started (its attacks, its victims): its own process
        group, since it was started in a session of its own."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def expected(scenario: str, version: int) -> bool:
    return version == 3 and scenario in SUCCEED_ON_V3


def verify_outcomes(
    outcomes: list[dict[str, Any]], scenarios: list[str], data_dir: Path
) -> list[str]:
    """What each scenario achieved, checked from the files on disk."""
    problems: list[str] = []
    seen = {(o["scenario"], o["version"]) for o in outcomes}
    for scenario in scenarios:
        for version in VERSIONS:
            if (scenario, version) not in seen:
                problems.append(f"attack {scenario} v{version}: did not run to its end")
    for o in outcomes:
        where = f"attack {o['scenario']} v{o['version']}"
        problems += [f"{where}: {p}" for p in _check_one(o, data_dir)]
    return problems


def _check_one(o: dict[str, Any], data_dir: Path) -> list[str]:
    if not o["attempted"]:
        return []
    scenario, version, evidence = o["scenario"], o["version"], o["evidence"]
    problems = []
    if o["achieved"] != expected(scenario, version):
        verb = "succeeded" if o["achieved"] else "failed"
        problems.append(f"the attack {verb}, which the findings do not expect: {o['summary']}")
    if o["legit_failures"]:
        problems.append(f"{o['legit_failures']} legitimate upload(s) failed")
    loot = Path(evidence["loot"]) if "loot" in evidence else None
    if loot is not None:
        victim_file = Path(evidence["victim_file"])
        copy = loot / victim_file.name
        holds = copy.is_file() and copy.read_bytes() == victim_file.read_bytes()
        if version == 3 and not holds:
            problems.append(f"the attacker's copy {copy} is not the victim's file, byte for byte")
        if version == 4 and loot.exists() and any(loot.iterdir()):
            problems.append(f"the attacker holds files on version 4: {sorted(loot.iterdir())}")
    stored = _stored(o, data_dir)
    if scenario == "alter-crc":
        original = Path(evidence["victim_file"]).read_bytes()
        if version == 3:
            kept = stored.read_bytes() if stored and stored.is_file() else None
            if kept is None or kept == original or cksum(kept) != cksum(original):
                problems.append(f"{stored} is not the altered order with the original's CRC")
        elif stored and stored.is_file() and stored.read_bytes() != original:
            problems.append(f"{stored} is stored altered on version 4")
    if scenario == "replay":
        old, new = Path(evidence["old_file"]), Path(evidence["new_file"])
        want = old if version == 3 else new
        if stored is None or not stored.is_file() or stored.read_bytes() != want.read_bytes():
            problems.append(f"{stored} is not the {'old' if version == 3 else 'new'} contract")
    if scenario in ("hijack", "record-flood", "idle-flood"):
        original = Path(evidence["victim_file"]).read_bytes()
        if stored is None or not stored.is_file() or stored.read_bytes() != original:
            problems.append(f"the victim's file {stored} is not on the server as sent")
    return problems


def _stored(o: dict[str, Any], data_dir: Path) -> Path | None:
    evidence = o["evidence"]
    client_id, name = evidence.get("victim_client_id"), evidence.get("stored_name")
    if not client_id or not name:
        return None
    base = data_dir / "v4" / "files" if o["version"] == 4 else data_dir / "files"
    return Path(base, str(client_id), str(name))


#: Outcome field -> the attacker's counter that must say the same in Prometheus.
COUNTERS = {
    "files_read": "eft_attack_files_read_total",
    "files_altered": "eft_attack_files_altered_total",
    "sessions_hijacked": "eft_attack_sessions_hijacked_total",
    "legit_failures": "eft_attack_legit_failures_total",
}


def expected_series(o: dict[str, Any]) -> dict[str, int]:
    """Each attacker series of an outcome, as the outcome says it must be."""
    series = {metric: int(o[field]) for field, metric in COUNTERS.items()}
    series["eft_attack_attempts_refused_total"] = int(o["attempted"] and not o["achieved"])
    series["eft_attack_legit_upload_seconds_count"] = len(o["legit_seconds"])
    return series


def check_metrics(
    query: Any, outcomes: list[dict[str, Any]], attempts: int, pause: float
) -> tuple[list[str], dict[str, int | None]]:
    """Prometheus's figures against the outcomes (a few scrapes allowed for the last):
    the problems, and each series's value as Prometheus gave it."""
    problems: list[str] = []
    figures: dict[str, int | None] = {}
    for _ in range(attempts):
        problems = []
        for o in outcomes:
            labels = f'scenario="{o["scenario"]}",version="{o["version"]}"'
            for metric, want in expected_series(o).items():
                result = query(f'{metric}{{job="eft-attacker",{labels}}}')
                got = int(float(result[0]["value"][1])) if result else None
                figures[f"{metric}{{{labels}}}"] = got
                if got != want:
                    problems.append(f"Prometheus: {metric}{{{labels}}} is {got}, expected {want}")
        if not problems:
            break
        time.sleep(pause)
    return problems, figures


def print_attacks(console: Console, outcomes: list[dict[str, Any]]) -> None:
    table = Table(title="attacks: what each scenario achieved")
    table.add_column("scenario")
    table.add_column("finding")
    for version in VERSIONS:
        table.add_column(f"version {version}")
    by_key = {(o["scenario"], o["version"]): o for o in outcomes}
    for scenario, (finding, _what) in SCENARIOS.items():
        cells = []
        for version in VERSIONS:
            o = by_key.get((scenario, version))
            if o is None:
                cells.append("")
                continue
            mark = "[red]ACHIEVED[/]" if o["achieved"] else "[green]refused[/]"
            cells.append(f"{mark}: {o['summary']}" if o["attempted"] else o["summary"])
        if any(cells):
            table.add_row(scenario, finding, *cells)
    console.print(table)
