"""EFT-14: path traversal in ``file_name``; our server keeps only a safe base name.

Version 4: a file name is a strict pattern; every hostile name is refused."""

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
    if not result.succeeded and version == 3:
        token = result.result["token"]
        # Paths were cut to their base name (spec section 8), the rest refused.
        assert f"{token}.txt" in result.result["stored_as"]
        # "..%2f" is not decoded: it is just part of a (harmless) name.
        assert set(result.result["stored_as"]) <= {f"{token}.txt", f"..%2f{token}.txt"}
        assert {"..", ".", "CON", "nul.txt"} <= set(result.result["refused"])
    if version == 4:
        # Names are relative paths checked part by part (docs/PROTOCOL-v4.md 6.3): every
        # hostile one is refused (1607, error 2, the session goes on). "..%2f" is no
        # separator, just characters of a (harmless) name stored inside the directory.
        token = result.result["token"]
        assert result.result["control"] == 1604  # a plain name is stored...
        assert result.result["stored_as"] == [f"..%2f{token}.txt", f"{token}.txt"]
        assert result.result["accepted"] == [f"..%2f{token}.txt"]  # ...and no hostile one
        assert len(result.result["refused"]) == 16
        assert {result.result["answers"][name] for name in result.result["refused"]} == {1607}
