"""known_servers' trust on first use (client/eft_client/known_servers.py): the first
contact pins, later contacts must match, a configured fingerprint wins over the file,
and lines that are not this server's pin are never taken for it. Rotation is in
test_known_servers_rotation.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from eft_client.errors import ServerIdentityChanged
from eft_client.known_servers import ServerPins


def test_the_first_contact_pins_the_fingerprint_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / "known_servers"
    pins = ServerPins(path, "host:1")
    assert pins.pinned is None
    pins.check("SHA256:a")
    assert pins.newly_pinned == "SHA256:a"
    assert path.read_text() == "host:1 SHA256:a\n"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    later = ServerPins(path, "host:1")
    assert later.pinned == "SHA256:a"
    later.check("SHA256:a")
    assert later.newly_pinned is None, "a known server is not pinned again"
    assert path.read_text() == "host:1 SHA256:a\n"


def test_another_key_is_refused_and_the_pin_kept(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("host:1 SHA256:a\n")
    with pytest.raises(ServerIdentityChanged) as refused:
        ServerPins(path, "host:1").check("SHA256:evil")
    message = str(refused.value)
    assert "presented SHA256:evil" in message and "says SHA256:a" in message
    assert str(path) in message
    assert path.read_text() == "host:1 SHA256:a\n"


def test_pins_are_per_server_and_port(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("host:1 SHA256:a\n")
    other_port = ServerPins(path, "host:2")
    assert other_port.pinned is None
    other_port.check("SHA256:b")  # a different server: pinned on its own line
    assert path.read_text() == "host:1 SHA256:a\nhost:2 SHA256:b\n"
    with pytest.raises(ServerIdentityChanged):
        ServerPins(path, "host:2").check("SHA256:a")


def test_comments_blank_and_malformed_lines_are_not_pins(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text(
        "# host:1 SHA256:comment\n\nhost:1\nhost:1 SHA256:x extra\nhost:1 SHA256:y z w\n"
    )
    pins = ServerPins(path, "host:1")
    assert pins.pinned is None
    pins.check("SHA256:a")  # nothing above counted: trust on first use
    assert path.read_text().endswith("host:1 SHA256:y z w\nhost:1 SHA256:a\n")


def test_a_next_line_alone_is_not_a_pin(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("host:1 SHA256:n next\n")
    assert ServerPins(path, "host:1").pinned is None


def test_the_last_pin_line_wins(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_text("host:1 SHA256:old\nhost:1 SHA256:new\n")
    pins = ServerPins(path, "host:1")
    assert pins.pinned == "SHA256:new"
    pins.check("SHA256:new")
    with pytest.raises(ServerIdentityChanged):
        pins.check("SHA256:old")


def test_a_configured_fingerprint_overrides_the_file_and_is_never_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "known_servers"
    pins = ServerPins(path, "host:1", configured="SHA256:c")
    assert pins.pinned == "SHA256:c"
    pins.check("SHA256:c")
    assert not path.exists(), "a configured fingerprint is not recorded"
    path.write_text("host:1 SHA256:file\n")
    with pytest.raises(ServerIdentityChanged, match="the configured fingerprint says SHA256:c"):
        ServerPins(path, "host:1", configured="SHA256:c").check("SHA256:file")


def test_a_file_that_is_not_ascii_is_an_error_not_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "known_servers"
    path.write_bytes("host:1 SHA256:\u00e9\n".encode())
    with pytest.raises(UnicodeDecodeError):
        ServerPins(path, "host:1").check("SHA256:a")
    assert path.read_bytes() == "host:1 SHA256:\u00e9\n".encode(), "nothing appended"
