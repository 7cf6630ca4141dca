"""known_servers during a server key rotation: the next key beside the pin, then the
pin moved to it; other servers' lines and comments untouched (docs/PROTOCOL-v4.md §4.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_client.errors import ServerIdentityChanged
from eft_client.known_servers import ServerPins


def test_learn_then_follow_the_next_key(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("# mine\nother:1 SHA256:o\nhost:1 SHA256:a\nlast:1 SHA256:z\n")
    pins = ServerPins(path, "host:1")
    pins.check("SHA256:a")
    change = pins.after_hello("SHA256:b")
    assert change is not None and (change.kind, change.fingerprint) == ("rotating", "SHA256:b")
    assert path.read_text() == (
        "# mine\nother:1 SHA256:o\nhost:1 SHA256:a\nhost:1 SHA256:b next\nlast:1 SHA256:z\n"
    )
    pins.check("SHA256:a")
    assert pins.after_hello("SHA256:b") is None, "said once"
    pins.check("SHA256:b")  # retired: the server presents the next key
    change = pins.after_hello(None)
    assert change is not None and (change.kind, change.previous) == ("rotated", "SHA256:a")
    assert path.read_text() == "# mine\nother:1 SHA256:o\nhost:1 SHA256:b\nlast:1 SHA256:z\n"
    with pytest.raises(ServerIdentityChanged, match="presented SHA256:a"):
        pins.check("SHA256:a")


def test_a_key_never_announced_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("host:1 SHA256:a\nhost:1 SHA256:b next\n")
    with pytest.raises(ServerIdentityChanged, match=r"SHA256:c.*SHA256:a"):
        ServerPins(path, "host:1").check("SHA256:c")
    assert path.read_text() == "host:1 SHA256:a\nhost:1 SHA256:b next\n"


def test_a_configured_fingerprint_is_told_but_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    pins = ServerPins(path, "host:1", configured="SHA256:a")
    pins.check("SHA256:a")
    change = pins.after_hello("SHA256:b")
    assert change is not None and change.kind == "announced"
    assert pins.after_hello("SHA256:b") is None
    assert not path.exists()
    with pytest.raises(ServerIdentityChanged):
        pins.check("SHA256:b")
