"""Each registration policy against real clients of both versions: a version-3 client
refused gets 1601 (exit 4), a version-4 one its registration refusal (exit 4); both are
logged and counted by reason; clients already registered keep logging in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import ClientDir, ServerProcess

from .support import metric, refusals, send

METRICS = ("--metrics-host", "127.0.0.1", "--metrics-port", "0")
REFUSED = "eft_registrations_refused_total"


@pytest.fixture
def note(tmp_path: Path) -> Path:
    path = tmp_path / "note.txt"
    path.write_bytes(b"operator policies\n" * 100)
    return path


def test_open_registers_anyone_of_either_version(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    note: Path,
) -> None:
    server = server_factory(*METRICS)
    assert send(client_factory("anyone", server.address), 3, note).returncode == 0
    assert send(client_factory("anybody", server.address), 4, note).returncode == 0
    assert refusals(server) == []
    for reason in ("closed", "not_allowed", "rate_limited", "rate_limited_address"):
        assert metric(server, REFUSED, f'reason="{reason}"') == 0


def test_allowlist_admits_listed_names_and_patterns_only(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    note: Path,
) -> None:
    server = server_factory("--register-allow", "lab-*", "--register-allow", "alice", *METRICS)
    assert send(client_factory("lab-1", server.address), 3, note).returncode == 0
    assert send(client_factory("alice", server.address), 4, note).returncode == 0
    refused_v3 = send(client_factory("mallory", server.address), 3, note)
    refused_v4 = send(client_factory("eve", server.address), 4, note)
    assert refused_v3.returncode == 4, refused_v3.stderr
    assert refused_v4.returncode == 4, refused_v4.stderr
    assert metric(server, REFUSED, 'reason="not_allowed"') == 2
    assert [(r["name"], r["version"]) for r in refusals(server)] == [("mallory", 3), ("eve", 4)]


def test_closed_refuses_new_names_and_keeps_the_registered_ones(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    note: Path,
) -> None:
    server = server_factory(*METRICS)
    alice, bob = client_factory("alice", server.address), client_factory("bob", server.address)
    assert send(alice, 3, note).returncode == 0
    assert send(bob, 4, note).returncode == 0
    server.stop()
    server.args = (*server.args, "--registration", "closed")
    server.start()
    assert send(alice, 3, note).returncode == 0, "a registered v3 client reconnects"
    assert send(bob, 4, note).returncode == 0, "a registered v4 client logs in"
    assert send(client_factory("carol", server.address), 3, note).returncode == 4
    assert send(client_factory("dave", server.address), 4, note).returncode == 4
    assert metric(server, REFUSED, 'reason="closed"') == 2


def test_rate_limits_per_address_and_server_wide(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    note: Path,
) -> None:
    # The window is a minute: the registrations below come well within one.
    server = server_factory("--register-rate-per-address", "2", *METRICS)
    assert send(client_factory("one", server.address), 3, note).returncode == 0
    assert send(client_factory("two", server.address), 4, note).returncode == 0
    assert send(client_factory("three", server.address), 3, note).returncode == 4
    assert send(client_factory("four", server.address), 4, note).returncode == 4
    assert metric(server, REFUSED, 'reason="rate_limited_address"') == 2
    assert send(client_factory("one", server.address), 3, note).returncode == 0, "logins pass"
    assert {r["address"] for r in refusals(server)} == {"127.0.0.1"}

    wide = server_factory("--register-rate", "1", *METRICS, name="wide")
    assert send(client_factory("five", wide.address), 4, note).returncode == 0
    assert send(client_factory("six", wide.address), 3, note).returncode == 4
    assert metric(wide, REFUSED, 'reason="rate_limited"') == 1
