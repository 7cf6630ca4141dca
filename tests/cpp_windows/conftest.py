"""Fixtures of the Windows client's tests: the .exe, and Wine with a prepared prefix.

Without the .exe or Wine the tests are skipped with the command that makes them, except
in CI (``CI`` set), where `make test` builds the .exe first: there a missing one fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import BUILD_COMMAND, EXE, Wine, cache_dir, find_wine, prepare_prefix


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Windows client's tests)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def wine() -> Wine:
    if not EXE.is_file():
        _missing(f"{EXE} is not built (run {BUILD_COMMAND})")
    wine = find_wine()
    if wine is None:
        _missing("wine is not installed (apt-get install wine wine64, or make system-deps)")
        raise AssertionError("unreachable")
    prefix = Path(os.environ.get("EFT_WINEPREFIX") or cache_dir() / "eft-wine")
    prepare_prefix(wine, prefix)
    return Wine(wine, prefix)


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    """The client's working directory (transfer.info, me.info, priv.key)."""
    d = tmp_path / "client"
    d.mkdir()
    return d
