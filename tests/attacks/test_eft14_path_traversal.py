"""EFT-14: path traversal in ``file_name``; our server keeps only a safe base name."""

from __future__ import annotations

from collections.abc import Callable

from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ServerProcess


def test_hostile_file_names_never_leave_the_clients_directory(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target()

    result = attacks.run(
        "path-traversal", "--target", server.address, "--data-dir", server.data_dir
    )

    assert result.succeeded is expected("EFT-14 path traversal", version)
    if not result.succeeded:
        token = result.result["token"]
        # Paths were cut to their base name (spec section 8), the rest refused.
        assert f"{token}.txt" in result.result["stored_as"]
        # "..%2f" is not decoded: it is just part of a (harmless) name.
        assert set(result.result["stored_as"]) <= {f"{token}.txt", f"..%2f{token}.txt"}
        assert {"..", ".", "CON", "nul.txt"} <= set(result.result["refused"])
