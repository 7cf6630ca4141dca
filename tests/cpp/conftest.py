"""Fixtures of the C++ client's end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import BUILDS


@pytest.fixture(params=sorted(BUILDS), ids=lambda name: f"cpp-{name}")
def client_bin(request: pytest.FixtureRequest) -> Path:
    """The C++ client binary: the release build and the ASan+UBSan build."""
    path = BUILDS[request.param]
    if not path.is_file():
        flag = " --sanitize" if request.param == "asan" else ""
        pytest.skip(f"{path} is not built (run client/cpp/build.sh{flag})")
    return path


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    """The client's working directory (transfer.info, me.info, priv.key)."""
    d = tmp_path / "client"
    d.mkdir()
    return d
