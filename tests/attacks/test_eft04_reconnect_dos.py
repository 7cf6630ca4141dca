"""EFT-04: reconnect by name and id is unauthenticated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected, stored
from tests.support.processes import ClientDir, ServerProcess


def test_reconnect_during_a_session_does_not_break_it_on_our_server(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """The spec's DoS (a new key for the victim); our server keeps the key per connection."""
    server = target()
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n" * 100)
    tap = attacks.start(
        "reconnect-dos", "--during-session", "--target", server.address, "--name", "alice"
    )
    victim = victims("alice", tap.address)

    run = victim.run([report])
    result = tap.finish()

    assert result.succeeded is expected("EFT-04 reconnect rotates the victim's key", version)
    if not result.succeeded:
        assert run.returncode == 0, run.stderr
        stored_file = stored(server, version, victim.client_id_hex, "report.txt")
        assert stored_file.read_bytes() == report.read_bytes()
    if version == 4:
        assert result.result["answers"] == [1606]  # logging in needs the victim's key


def test_held_reconnects_as_the_victim_fill_its_session_cap_and_lock_it_out(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")
    victim = victims("alice", server.address)
    assert victim.run([report]).returncode == 0

    dos = attacks.start(
        "reconnect-dos",
        "--target",
        server.address,
        "--client-id",
        victim.client_id_hex,
        "--name",
        "alice",
        "--hold",
        "1.5",
    )
    dos.wait_for("holding")
    # One retry (after about half a second) is still inside the hold; an attacker holds
    # for as long as it likes, so more retries only take longer to fail.
    locked_out = victim.run([report], "--timeout", "5", "--retries", "1")
    result = dos.finish()

    assert result.succeeded is expected("EFT-04 reconnects fill the victim's session cap", version)
    if result.succeeded:
        assert locked_out.returncode != 0
        assert "server_error" in locked_out.kinds()  # 1607: too many sessions
    else:
        assert locked_out.returncode == 0, locked_out.stderr
    if version == 4:
        # Log-ins as alice with another key: 1606 each. Unauthenticated handshakes held
        # open through the victim's run do not count against its session cap.
        assert result.result["answers"] == [1606] * 8
        assert result.result["half_open"] == result.result["still_open"] == 8
