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

_ATTACKS = "run as `python -m eft_attacks ...` processes by tests/attacks/test_eft*.py"
#: Modules with no test file of their own yet, and what tests them.
WITHOUT_A_TEST_FILE: dict[str, str] = {
    **{
        f"eft_attacks.{name}": _ATTACKS
        for name in [
            "bitflip",
            "blind_overwrite",
            "claim_key",
            "enumerate_names",
            "flood",
            "forged_denial",
            "hello_flood",
            "hostile_server",
            "impostor",
            "mitm_key",
            "oversize",
            "padding_oracle",
            "proxy",
            "reconnect_dos",
            "record",
            "replay",
            "rsa_weak",
            "slow",
            "sniff",
            "spoof_id",
        ]
    },
    "eft_server.s3_unfinished": "tests/s3 (a SeaweedFS process as the S3 service)",
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
