"""Every module of the project is imported by at least one test file (issue 23: "every
module has a focused test file"): a test that drives the module itself, not only a
process or another module that happens to run it. The few still tested only that way
are listed below with what tests them (docs/TESTING.md, "Modules without a focused
test file"); a new module must come with its test file.

Imports are read with ``ast``: ``import pkg.mod``, ``from pkg.mod import x`` and
``from pkg import mod`` count, from any file under tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "protocol/eft_protocol",
    "server/eft_server",
    "server/eft_admin",
    "client/eft_client",
    "lab/eft_lab",
    "check/eft_check",
    "attacks/eft_attacks",
)

#: The attacks are run as processes (``python -m eft_attacks NAME``) against a real
#: server, each by the test file named after the finding it proves: module -> (that
#: file, the attack's command name, which the file must pass to ``eft_attacks``).
ATTACK_TESTS: dict[str, tuple[str, str]] = {
    "eft_attacks.bitflip": ("test_eft07_bitflip.py", "bitflip"),
    "eft_attacks.blind_overwrite": ("test_eft05_blind_overwrite.py", "blind-overwrite"),
    "eft_attacks.claim_key": ("test_eft03_claim_key.py", "claim-key"),
    "eft_attacks.enumerate_names": ("test_eft13_names.py", "enumerate-names"),
    "eft_attacks.flood": ("test_eft15_idle_flood.py", "flood"),
    "eft_attacks.forged_denial": ("test_eft19_forged_denial.py", "forged-denial"),
    "eft_attacks.hello_flood": ("test_eft15_hello_flood.py", "hello-flood"),
    "eft_attacks.hostile_server": ("test_eft21_hostile_server.py", "hostile-server"),
    "eft_attacks.impostor": ("test_eft20_impostor.py", "impostor"),
    "eft_attacks.mitm_key": ("test_eft01_mitm_key_swap.py", "mitm-key"),
    "eft_attacks.oversize": ("test_eft15_resources.py", "oversize"),
    "eft_attacks.padding_oracle": ("test_eft06_padding_oracle.py", "padding-oracle"),
    # The man in the middle that mitm-key, spoof-id and record run.
    "eft_attacks.proxy": ("test_eft01_mitm_key_swap.py", "mitm-key"),
    "eft_attacks.reconnect_dos": ("test_eft04_reconnect_dos.py", "reconnect-dos"),
    # Records the sessions the passive attacks read (the fixtures make them).
    "eft_attacks.record": ("conftest.py", "record"),
    "eft_attacks.replay": ("test_eft09_replay.py", "replay"),
    "eft_attacks.rsa_weak": ("test_eft11_rsa_weak.py", "rsa-weak"),
    "eft_attacks.slow": ("test_eft15_record_flood.py", "slow"),
    "eft_attacks.sniff": ("test_eft17_metadata.py", "sniff"),
    "eft_attacks.spoof_id": ("test_eft02_spoofed_requests.py", "spoof-id"),
}
#: Modules with no test file of their own yet, and what tests them.
WITHOUT_A_TEST_FILE: dict[str, str] = {
    **{
        module: f"run as a process by tests/attacks/{test_file}"
        for module, (test_file, _) in ATTACK_TESTS.items()
    },
}


def _modules() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        root = REPO / package
        for path in root.rglob("*.py"):
            parts = path.relative_to(root.parent).with_suffix("").parts
            if parts[-1] not in ("__init__", "__main__"):
                found.add(".".join(parts))
    return found


def _imported_by_tests(modules: set[str]) -> set[str]:
    imported: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported & modules


def test_the_packages_are_found() -> None:
    modules = _modules()
    assert {"eft_server.connection", "eft_client.transfer_v4", "eft_lab.view"} <= modules
    assert len(modules) > 120


def test_every_module_is_imported_by_a_test_file_or_listed() -> None:
    modules = _modules()
    untested = modules - _imported_by_tests(modules)
    unlisted = sorted(untested - set(WITHOUT_A_TEST_FILE))
    assert unlisted == [], (
        f"modules no test file imports: {unlisted}; give each a focused test file "
        "(tests/unit/test_<module>.py, ...)"
    )


def test_the_list_names_only_modules_that_exist() -> None:
    assert sorted(set(WITHOUT_A_TEST_FILE) - _modules()) == []


def test_each_attack_is_run_by_the_test_file_named_for_it() -> None:
    for module, (test_file, command) in ATTACK_TESTS.items():
        text = (REPO / "tests" / "attacks" / test_file).read_text(encoding="utf-8")
        assert f'"{command}"' in text, f"{module}: {test_file} does not run {command!r}"
