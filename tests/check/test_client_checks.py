"""``eft-check client`` against our clients and against a client with each known mistake.

Our Python client and the C++ one (when built) pass every scenario; a scripted client
(tests/check/deviant_client.py) passes them all too, until one of its quirks is switched
on: then that mistake is the only one named, and every scenario that did not pass names
it. The quirks run the scenarios where they show, plus one where they must not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from eft_check.client_checks import ClientChecker
from eft_check.report import Report, Status
from eft_check.rules import CLIENT_CHECKS
from tests.cpp.helpers import BUILDS

DEVIANT = [sys.executable, str(Path(__file__).with_name("deviant_client.py"))]
#: A conforming client never leaves the server waiting mid-file, so this can be long.
PATIENT = 10.0
#: The deviant clients that wait for an answer wait forever: two seconds show it.
IMPATIENT = 2.0


def run(command: list[str], only: set[str] | None = None, patience: float = PATIENT) -> Report:
    return ClientChecker(command, timeout=10, patience=patience, slow=0.3).run(only)


def not_passed(report: Report) -> list[dict[str, object]]:
    return [r.as_json() for r in report.results if r.status is not Status.PASS]


def test_our_python_client_passes_every_scenario() -> None:
    # --re-register: a 1606 is obeyed as §3.3 says only with the user's word
    # (docs/IDENTITY.md); without it our clients stop, keeping me.info.
    report = run([sys.executable, "-m", "eft_client", "--protocol", "3", "--re-register"])
    assert [r.rule.id for r in report.results] == list(CLIENT_CHECKS)
    assert report.conforms, not_passed(report)


def test_our_cpp_client_passes_every_scenario() -> None:
    binary = BUILDS["release"]
    if not binary.is_file():
        pytest.skip(f"{binary} is not built (make cpp)")
    report = run([str(binary), "--re-register"])  # as above
    assert report.conforms, not_passed(report)


def test_placeholders_pass_the_settings_as_flags() -> None:
    """A client given everything on its command line (no transfer.info read)."""
    command = [sys.executable, "-m", "eft_client", "--protocol", "3"]
    command += ["--server", "{host}:{port}", "--name", "{name}", "--config-dir", "{dir}", "{file}"]
    report = run(command, {"register", "empty-file"})
    assert report.conforms, not_passed(report)


def test_the_deviant_client_without_quirks_passes_every_scenario() -> None:
    report = run(DEVIANT)
    assert report.conforms, not_passed(report)


#: Each mistake: the scenarios where it must show, and one where it must not.
CLIENT_MISTAKES = [
    ("per-packet-cbc", Status.FAIL, {"multi-packet"}, "name-taken"),
    ("swapped-packet-fields", Status.DEVIATION, {"register"}, "empty-file"),
    ("payload-size-mismatch", Status.FAIL, {"register"}, "name-taken"),
    ("no-packet-for-empty-file", Status.FAIL, {"empty-file"}, "register"),
    ("waits-for-901-answer", Status.DEVIATION, {"crc-wrong-once", "coalesced-answers"}, "register"),
    ("waits-for-828-answer", Status.FAIL, {"register"}, "name-taken"),
    ("plaintext-sizes", Status.DEVIATION, {"register"}, "error-1607-four"),
    ("one-recv", Status.DEVIATION, {"split-answers"}, "coalesced-answers"),
    ("zero-based-packets", Status.DEVIATION, {"register"}, "name-taken"),
    ("no-retry-after-1607", Status.FAIL, {"error-1607-once", "file-1607-once"}, "register"),
]


@pytest.mark.parametrize(("mistake", "status", "shows_in", "control"), CLIENT_MISTAKES)
def test_each_client_mistake_is_named_and_nothing_else(
    mistake: str, status: Status, shows_in: set[str], control: str
) -> None:
    report = run([*DEVIANT, "--quirk", mistake], {*shows_in, control}, patience=IMPATIENT)
    failed = [r for r in report.results if r.status is not Status.PASS]
    assert {r.rule.id for r in failed} == shows_in, not_passed(report)
    for result in failed:
        assert result.mistakes == [mistake], (result.rule.id, result.notes)
        assert result.status is status, (result.rule.id, result.notes)
