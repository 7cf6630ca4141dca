"""The alert rules: valid, unit-tested with promtool, and the unit tests able to fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
ALERTS = {
    "EftServerDown",
    "EftErrorRatio",
    "EftNoVerifiedTransfers",
    "EftDiskNearlyFull",
    "EftCrcMismatchRatio",
}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "install Prometheus (Debian package 'prometheus') for promtool"
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid_and_each_has_a_unit_test() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == ALERTS
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == ALERTS, "every alert needs a test in which it fires"


def test_the_unit_tests_pass() -> None:
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_fail_when_a_threshold_is_wrong(tmp_path: Path) -> None:
    """The same tests against rules with one threshold changed: they must notice."""
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert rules.count("> 0.05") == 1
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.05", "> 0.5"))
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path)
    done = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "EftErrorRatio" in done.stdout + done.stderr


def test_both_labs_load_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((PROMETHEUS.parents[1] / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./monitoring/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
