"""EFT-15: idle sockets beyond ``--max-connections`` (docs/SECURITY.md).

The flood comes from 127.0.0.3 (``eft-attack flood --source``), the legitimate client
from 127.0.0.1. With ``--when-full shed`` (the default) the server, when full, closes
the oldest unauthenticated connection of the address holding the most of them: the
flood sheds itself and a real upload goes through. With ``--when-full refuse`` (the old
behaviour) the newcomer is refused, and the client says the server may be full.

The server's long handshake timeout keeps the flood's connections in place for the
whole test; the tests wait for the server's own log of the cap being hit, never a
clock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import AttackProcess, Attacks, expected, stored
from tests.support.processes import ClientDir, ServerProcess

LIMIT = "20"
#: More than LIMIT: the extra ones keep coming back, so the server stays full.
FLOOD = "30"
ATTACKER = "127.0.0.3"
#: The flood's connections stay until the test is over (the attack is then killed).
STEADY = ("--max-connections", LIMIT, "--handshake-timeout", "600")


def _await_event(server: ServerProcess, event: str, timeout: float = 60) -> dict[str, object]:
    """The server's first log record of ``event`` (polled: it is another process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in server.logs():
            if record.get("event") == event:
                return record
        time.sleep(0.05)
    raise AssertionError(f"the server never logged {event!r}")


def _flood(server: ServerProcess, attacks: Attacks, hold: str) -> AttackProcess:
    return attacks.start(
        "flood",
        "--target",
        server.address,
        "--connections",
        FLOOD,
        "--source",
        ATTACKER,
        "--hold",
        hold,
    )


def test_idle_sockets_are_shed_so_a_real_upload_goes_through(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target(*STEADY)
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n" * 50_000)  # 900 kB
    flood = _flood(server, attacks, "600")
    _await_event(server, "connection_shed")  # full, and shedding

    started = time.monotonic()
    run = victims("alice", server.address).run([report], "--timeout", "10", "--retries", "0")
    seconds = time.monotonic() - started

    assert flood.proc.poll() is None, "the flood must still be on"
    flood.stop()
    assert run.returncode == 0, run.stderr
    victim = victims("alice", server.address)
    assert stored(server, version, victim.client_id_hex, "report.txt").read_bytes() == (
        report.read_bytes()
    )
    shed = [r for r in server.logs() if r.get("event") == "connection_shed"]
    assert shed and all(set(r["addresses"]) == {ATTACKER} for r in shed)  # the flood's only
    print(f"v{version} upload under an idle flood of {FLOOD} (cap {LIMIT}): {seconds:.2f} s")


def test_the_same_flood_finds_no_legitimate_client_refused(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    """The attack's own verdict: its legitimate probes (from 127.0.0.1) all get in."""
    server = target(*STEADY)

    result = _flood(server, attacks, "3").finish()

    assert result.succeeded is expected("EFT-15 idle sockets lock clients out", version)
    assert result.result["probes"] > 0


def test_with_the_old_refusal_the_client_is_locked_out_and_told_the_server_may_be_full(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target(*STEADY, "--when-full", "refuse")
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")
    flood = _flood(server, attacks, "600")
    _await_event(server, "connection_refused")  # full: the flood's extras are refused

    run = victims("alice", server.address).run([report], "--timeout", "10", "--retries", "0")

    flood.stop()
    assert run.returncode != 0
    said = run.stderr + json.dumps(run.events)
    assert "it may be full" in said, said


def test_a_server_full_of_authenticated_sessions_sheds_none_and_says_it_is_full(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """Shedding (the default) takes only connections that have not authenticated: two
    registered peers trickling a request hold both places of ``--max-connections 2``,
    so the newcomer is refused, and our client says the server may be full."""
    server = target("--max-connections", "2", "--idle-timeout", "600", "--read-timeout", "600")
    holders = [attacks.start("slow", "--target", server.address, "--hold", "600") for _ in "ab"]
    for holder in holders:
        holder.wait_for("step")  # registered: the handshake is over, the place is held
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers\n")

    run = victims("alice", server.address).run([report], "--timeout", "10", "--retries", "0")

    assert all(holder.proc.poll() is None for holder in holders), "both must still hold"
    assert run.returncode != 0
    said = run.stderr + json.dumps(run.events)
    assert "it may be full" in said, said
    events = [r.get("event") for r in server.logs()]
    assert "connection_shed" not in events
    refused = [r for r in server.logs() if r.get("event") == "connection_refused"]
    assert refused and all(r["reason"] == "max_connections" for r in refused)
