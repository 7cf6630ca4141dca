"""The attack lab's verification says no when the outcome is not the expected one.

Outcomes as the attacker writes them, with files laid out as the lab leaves them; each
test spoils one thing and expects the problem named (the lab then exits 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eft_lab.attack_report import expected_series, verify_outcomes
from eft_lab.attacker import AttackMetrics


def _outcome(scenario: str, version: int, achieved: bool, **evidence: Any) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "version": version,
        "attempted": True,
        "achieved": achieved,
        "summary": "",
        "files_read": 0,
        "files_altered": 0,
        "sessions_hijacked": 0,
        "legit_uploads": 0,
        "legit_failures": 0,
        "legit_seconds": [],
        "evidence": evidence,
    }


def _steal_key(tmp_path: Path, version: int, copy: bytes | None) -> dict[str, Any]:
    victim_file = tmp_path / f"v{version}" / "salaries.csv"
    victim_file.parent.mkdir(parents=True)
    victim_file.write_bytes(b"name,salary\nalice,98000\n")
    loot = tmp_path / f"v{version}" / "loot"
    if copy is not None:
        loot.mkdir()
        (loot / "salaries.csv").write_bytes(copy)
    return _outcome(
        "steal-key", version, version == 3, victim_file=str(victim_file), loot=str(loot)
    )


def test_the_expected_outcome_passes(tmp_path: Path) -> None:
    outcomes = [
        _steal_key(tmp_path, 3, b"name,salary\nalice,98000\n"),
        _steal_key(tmp_path, 4, None),
    ]
    assert verify_outcomes(outcomes, ["steal-key"], tmp_path / "data") == []


def test_a_copy_that_differs_from_the_victims_file_is_a_problem(tmp_path: Path) -> None:
    outcomes = [_steal_key(tmp_path, 3, b"something else"), _steal_key(tmp_path, 4, None)]
    problems = verify_outcomes(outcomes, ["steal-key"], tmp_path / "data")
    assert len(problems) == 1 and "byte for byte" in problems[0]


def test_a_version_4_attack_that_succeeds_is_a_problem(tmp_path: Path) -> None:
    v4 = _steal_key(tmp_path, 4, b"name,salary\nalice,98000\n")
    v4["achieved"] = True
    outcomes = [_steal_key(tmp_path, 3, b"name,salary\nalice,98000\n"), v4]
    problems = verify_outcomes(outcomes, ["steal-key"], tmp_path / "data")
    assert any("findings do not expect" in p for p in problems), problems
    assert any("holds files on version 4" in p for p in problems), problems


def test_a_scenario_that_did_not_finish_and_a_failed_legitimate_upload(tmp_path: Path) -> None:
    v3 = _steal_key(tmp_path, 3, b"name,salary\nalice,98000\n")
    v3["legit_failures"] = 1
    problems = verify_outcomes([v3], ["steal-key"], tmp_path / "data")
    assert "attack steal-key v4: did not run to its end" in problems
    assert "attack steal-key v3: 1 legitimate upload(s) failed" in problems


def test_an_altered_file_must_keep_the_crc_on_version_3(tmp_path: Path) -> None:
    original = tmp_path / "order.txt"
    original.write_bytes(b"PAY TO: alice   \n")
    stored = tmp_path / "data" / "files" / "ab" / "order.txt"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"PAY TO: mallory \n")  # altered, but its CRC differs
    v3 = _outcome(
        "alter-crc", 3, True,
        victim_file=str(original), victim_client_id="ab", stored_name="order.txt",
    )  # fmt: skip
    problems = verify_outcomes([v3], ["alter-crc"], tmp_path / "data")
    assert any("original's CRC" in p for p in problems), problems


def test_every_series_the_lab_compares_exists_from_the_start() -> None:
    registry = AttackMetrics().registry
    names = {sample.name for family in registry.collect() for sample in family.samples}
    assert set(expected_series(_outcome("replay", 4, False))) <= names
