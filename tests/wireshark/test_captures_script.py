"""``python -m eft_lab.captures``: what it says before it captures anything. (Recording
needs root and port 1256; docs/WIRESHARK.md says how the shipped captures were made.)"""

from __future__ import annotations

import pytest

from eft_lab import captures


def test_it_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert captures.main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(captures.SCENARIOS)


def test_an_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        captures.main(["v5-upload"])
    assert exit_.value.code == 2
    assert "unknown scenario 'v5-upload'" in capsys.readouterr().err


def test_it_refuses_to_run_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(captures.os, "geteuid", lambda: 1000)
    assert captures.main(["v3-upload"]) == 2
    assert "run as root" in capsys.readouterr().err
