"""The native attack lab end to end: ``eft-lab --attack all`` with a real Prometheus.

One run plays every scenario on version 3 and on version 4 (sequentially, beside the
lab's load clients): one run is faster than one per scenario, since the server, the
clients and Prometheus start once. The lab's own verification must pass, and this test
checks the outcome again from the files on disk and from the attacker's series as
Prometheus scraped them: on version 3 the attacker's copies are the victims' files byte
for byte and the altered files are on the server with their CRC; on version 4 nothing
of the kind, and no legitimate client fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eft_lab.prometheus import dashboard_queries
from eft_protocol.cksum import cksum

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring/grafana/dashboards/eft-lab.json"


@pytest.fixture(scope="module")
def attack_lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert shutil.which("prometheus"), "install Prometheus (Debian package 'prometheus')"
    tmp = tmp_path_factory.mktemp("attack-lab")
    summary_path = tmp / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_lab.cli",
            "--out",
            str(tmp / "run"),
            "--attack",
            "all",
            "--duration",
            "1",
            "--clients",
            "1",
            "--v4-clients",
            "1",
            "--rate",
            "2",
            "--max-size",
            "200000",
            "--prometheus",
            "on",
            "--scrape-interval",
            "1",
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["data_dir"] = tmp / "run" / "server" / "data"
    return summary


def _outcome(summary: dict[str, Any], scenario: str, version: int) -> dict[str, Any]:
    found = [o for o in summary["attacks"] if (o["scenario"], o["version"]) == (scenario, version)]
    assert len(found) == 1, summary["attacks"]
    return found[0]


def _stored(summary: dict[str, Any], o: dict[str, Any]) -> Path:
    base = summary["data_dir"] / ("v4/files" if o["version"] == 4 else "files")
    return base / o["evidence"]["victim_client_id"] / o["evidence"]["stored_name"]


def _series(summary: dict[str, Any], metric: str, scenario: str, version: int) -> int | None:
    key = f'{metric}{{scenario="{scenario}",version="{version}"}}'
    return summary["prometheus"]["attack_series"][key]


@pytest.mark.slow
def test_the_lab_checks_pass_and_every_attack_panel_has_data(attack_lab: dict[str, Any]) -> None:
    assert attack_lab["problems"] == []
    panels = attack_lab["prometheus"]["panels"]
    assert len(panels) == len(dashboard_queries(DASHBOARD, attacks=True))
    assert [p for p in panels if p["series"] == 0] == []
    assert {p["panel"] for p in panels} >= {
        "Files the attacker read",
        "Legitimate uploads under attack",
    }
    assert all(row["failed"] == 0 for row in attack_lab["clients"])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["steal-key", "hijack"])
def test_v3_attacker_holds_the_victims_file_and_v4_nothing(
    attack_lab: dict[str, Any], scenario: str
) -> None:
    for version in (3, 4):
        o = _outcome(attack_lab, scenario, version)
        victim_file = Path(o["evidence"]["victim_file"])
        copy = Path(o["evidence"]["loot"]) / victim_file.name
        read = _series(attack_lab, "eft_attack_files_read_total", scenario, version)
        if version == 3:
            assert o["achieved"]
            assert copy.read_bytes() == victim_file.read_bytes()
            assert read == 1
        else:
            assert not o["achieved"]
            assert not copy.exists()
            assert read == 0
            assert _series(attack_lab, "eft_attack_attempts_refused_total", scenario, 4) == 1
    hijacked = _series(attack_lab, "eft_attack_sessions_hijacked_total", scenario, 3)
    assert hijacked == (1 if scenario == "hijack" else 0)  # the oracle needs the left one


@pytest.mark.slow
def test_v3_stores_the_altered_order_with_its_crc_and_v4_does_not(
    attack_lab: dict[str, Any],
) -> None:
    v3, v4 = _outcome(attack_lab, "alter-crc", 3), _outcome(attack_lab, "alter-crc", 4)
    original = Path(v3["evidence"]["victim_file"]).read_bytes()
    kept = _stored(attack_lab, v3).read_bytes()
    assert kept != original and cksum(kept) == cksum(original)
    assert b"PAY TO: mallory " in kept
    assert v3["evidence"]["victim_exit"] == 0  # the victim saw success
    assert _series(attack_lab, "eft_attack_files_altered_total", "alter-crc", 3) == 1
    assert not v4["achieved"]
    # Nothing altered is stored. The flip may land on a record after the file was checked
    # whole and committed (the server's answer): then the stored file is the original.
    stored = _stored(attack_lab, v4)
    sent = Path(v4["evidence"]["victim_file"]).read_bytes()
    assert not stored.exists() or stored.read_bytes() == sent
    # The victim noticed: it stopped, or (a small file goes whole in one 904 with PACK,
    # and has no 1603 to flip) the server closed on the altered record without an answer
    # and the victim's retry stored the file as it was sent.
    assert v4["evidence"]["victim_exit"] != 0 or stored.read_bytes() == sent
    assert _series(attack_lab, "eft_attack_files_altered_total", "alter-crc", 4) == 0


@pytest.mark.slow
def test_v3_replay_rolls_the_file_back_and_v4_keeps_the_new_one(
    attack_lab: dict[str, Any],
) -> None:
    for version, which in ((3, "old_file"), (4, "new_file")):
        o = _outcome(attack_lab, "replay", version)
        assert _stored(attack_lab, o).read_bytes() == Path(o["evidence"][which]).read_bytes()
        altered = _series(attack_lab, "eft_attack_files_altered_total", "replay", version)
        assert altered == (1 if version == 3 else 0)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["record-flood", "idle-flood"])
def test_under_the_floods_every_legitimate_upload_goes_through(
    attack_lab: dict[str, Any], scenario: str
) -> None:
    for version in (3, 4):
        o = _outcome(attack_lab, scenario, version)
        if not o["attempted"]:
            assert (scenario, version) == ("record-flood", 3)  # version 3 has no records
            continue
        assert not o["achieved"] and o["legit_failures"] == 0
        assert (
            _stored(attack_lab, o).read_bytes() == Path(o["evidence"]["victim_file"]).read_bytes()
        )
        uploads = _series(attack_lab, "eft_attack_legit_upload_seconds_count", scenario, version)
        assert uploads == o["legit_uploads"] == 3
        assert _series(attack_lab, "eft_attack_legit_failures_total", scenario, version) == 0
