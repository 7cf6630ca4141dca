"""Every command's --help: plain text (no reStructuredText marks), current, and naming
every EFT_* variable the README documents for it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from eft_lab.processes import clean_env

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "eft-server": "eft_server",
    "eft-client": "eft_client",
    "eft-lab": "eft_lab.cli",
    "eft-lab-client": "eft_lab.load_client",
    "eft-proxy": "eft_lab.corrupting_proxy",
    "eft-attack": "eft_attacks",
    "eft-check": "eft_check",
    "eft-admin": "eft_admin",
}


def help_text(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", MODULES[command], "--help"],
        capture_output=True,
        text=True,
        env={**clean_env(), "COLUMNS": "200"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("command", MODULES)
def test_help_is_plain_text(command: str) -> None:
    text = help_text(command)
    assert "``" not in text
    assert ":class:" not in text and ":func:" not in text


def test_the_server_says_it_speaks_both_versions() -> None:
    assert "protocol versions 3 and 4" in help_text("eft-server")


def _readme_table(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(heading)
    return readme[start : readme.index("\n\n", readme.index("|", start))]


@pytest.mark.parametrize(
    ("command", "heading"),
    [("eft-server", "### Server: `eft-server`"), ("eft-client", "### Client: `eft-client")],
)
def test_every_flag_has_its_row_and_variable_in_the_readme(command: str, heading: str) -> None:
    """The README's table lists every flag of --help, and each flag's EFT_* twin."""
    table = _readme_table(heading)
    text = help_text(command)
    flags = set(re.findall(r"^\s+(--[a-z0-9-]+)", text, re.MULTILINE)) - {"--help", "--version"}
    listed = set(re.findall(r"`(--[a-z0-9-]+)", table))
    assert flags - listed == set(), f"README's {command} table lacks {flags - listed}"
    for variable in re.findall(r"\b(EFT_[A-Z0-9_]+)", text):
        assert variable in table, f"README's {command} table lacks {variable}"
