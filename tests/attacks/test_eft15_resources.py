"""EFT-15: resource exhaustion by peers that need no credentials (anyone may register).

Version 4 closes the slow peers and the oversized headers; it keeps open registration,
one global connection cap and no quota, so those floods still work (docs/SECURITY.md)."""

from __future__ import annotations

from collections.abc import Callable

from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ServerProcess

FAST = ("--handshake-timeout", "1", "--read-timeout", "1", "--idle-timeout", "1")
#: How long the attacks hold on: four of the server's timeouts, so that whether a timeout
#: fired is not decided by a fraction of a second of scheduling on a busy machine.
HOLD = "4"
#: A byte every tenth of a second: a tenth of the read timeout.
INTERVAL = "0.1"


def test_a_connection_flood_fills_the_connection_cap_and_refuses_new_clients(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    """The old behaviour, ``--when-full refuse`` (the default sheds: test_eft15_idle_flood)."""
    server = target("--max-connections", "8", "--when-full", "refuse", *FAST)

    result = attacks.run("flood", "--target", server.address, "--connections", "8", "--hold", HOLD)

    assert result.succeeded is expected("EFT-15 connection flood locks clients out", version)
    if result.succeeded:
        assert result.result["reopened"] > 0  # the handshake timeout closed them; we came back


def test_a_registered_slow_peer_outlasts_every_timeout(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target(*FAST)

    result = attacks.run("slow", "--target", server.address, "--hold", HOLD, "--interval", INTERVAL)

    assert result.succeeded is expected("EFT-15 slow peer after registering", version)
    if result.succeeded:
        assert result.result["held"] >= 3  # three read and idle timeouts and more
    else:  # v3: a whole frame within the read timeout; v4: a whole header within idle
        assert result.result["held"] < 3, "cut off, but only when the attacker gave up"


def test_an_unauthenticated_slow_peer_is_cut_off_by_the_handshake_timeout(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target(*FAST)

    result = attacks.run(
        "slow", "--target", server.address, "--no-register", "--hold", HOLD, "--interval", INTERVAL
    )

    assert result.succeeded is expected("EFT-15 slow peer before the handshake", version)
    if not result.succeeded:
        assert result.result["held"] < 3, "cut off, but only when the attacker gave up"


def test_a_declared_4_gib_upload_is_accepted_and_written_without_a_quota(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target()

    result = attacks.run(
        "oversize", "--target", server.address, "--send", "8", "--data-dir", server.data_dir
    )

    assert result.succeeded is expected("EFT-15 oversized file accepted without quota", version)
    if result.succeeded:
        assert result.result["temp_bytes"] > 0  # the server is writing it to disk
    if version == 4:
        assert result.result["declared"] == 1 << 40  # the limit the server hello announces
        assert result.result["error"] == 8  # no space: refused before any data


def test_a_fixed_size_request_claiming_4_gib_is_refused_at_once(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target()

    result = attacks.run("oversize", "--target", server.address, "--mode", "fixed")

    assert result.succeeded is expected("EFT-15 oversized fixed-size request", version)
    if not result.succeeded:
        assert result.result["closed"] is True
    if version == 4:  # message 1's header, and a record header after the handshake
        assert result.result["hello_closed"] is result.result["record_closed"] is True


def test_registration_needs_nothing_so_a_flood_of_names_is_accepted(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target()

    result = attacks.run("flood", "--target", server.address, "--registrations", "100")

    assert result.succeeded is expected("EFT-15 registration flood", version)
    if result.succeeded:
        assert result.result["accepted"] == 100
