"""Invitation tokens with real clients of both versions: valid, reused, expired, forged,
revoked, for another name, raced for; stored hashed, never logged (docs/OPERATIONS.md)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from eft_server.tokens import TOKENS_FILE
from tests.support.processes import ClientDir, ClientRun, ServerProcess, finish, write_random_file
from tests.v4.wire_client import WireV4

from .support import admin, admin_json, metric

METRICS = ("--metrics-host", "127.0.0.1", "--metrics-port", "0")
EXIT_REFUSED = 4


def with_token(client: ClientDir, protocol: int, token: str | None, *files: Path) -> ClientRun:
    client.protocol = protocol
    client.extra_env = {} if token is None else {"EFT_TOKEN": token}
    return client.run(list(files), "--retry-for", "0")


def create(data: Path, *args: str) -> str:
    made = admin_json(data, "token", "create", *args)
    assert made["state"] in ("valid", "expired")
    token: str = made["token"]
    return token


def test_tokens_of_every_kind_with_clients_of_both_versions(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--registration", "token", *METRICS)
    data, address = server.data_dir, server.address
    note = write_random_file(tmp_path / "note.bin", 2000, seed=1)

    # No token: version 3 gets the 1601 it understands, version 4 its refusal in words.
    run = with_token(client_factory("nobody3", address), 3, None, note)
    assert run.returncode == EXIT_REFUSED
    run = with_token(client_factory("nobody4", address), 4, None, note)
    assert run.returncode == EXIT_REFUSED and "invitation token only" in run.stderr

    # A one-time token admits one registration, of either version; then it is used up.
    once = create(data)
    alice = client_factory("alice", address)
    assert with_token(alice, 3, once, note).returncode == 0
    run = with_token(client_factory("bob", address), 4, once, note)
    assert run.returncode == EXIT_REFUSED and "used up" in run.stderr
    listed = {t["id"]: t for t in admin_json(data, "token", "list")}
    (entry,) = listed.values()
    assert (entry["state"], entry["used"], entry["used_by"]) == ("used up", 1, ["alice"])
    # Reused by a version-3 client: 1601.
    assert with_token(client_factory("bob3", address), 3, once, note).returncode == EXIT_REFUSED

    # A token for two registrations, by a version-4 client then a version-3 one.
    twice = create(data, "--uses", "2")
    carol = client_factory("carol", address)
    assert with_token(carol, 4, twice, note).returncode == 0
    assert with_token(client_factory("dave", address), 3, twice, note).returncode == 0
    # Registered clients log in again with no token (the policy is for new names).
    assert with_token(carol, 4, None, note).returncode == 0
    assert with_token(alice, 3, None, note).returncode == 0

    # Forged, expired, revoked, and for another name.
    forged = "eft_" + secrets.token_hex(16)
    run = with_token(client_factory("eve", address), 4, forged, note)
    assert run.returncode == EXIT_REFUSED and "not one this server made" in run.stderr
    assert with_token(client_factory("eve3", address), 3, forged, note).returncode == EXIT_REFUSED
    expired = create(data, "--expires", "0s")
    run = with_token(client_factory("frank", address), 4, expired, note)
    assert run.returncode == EXIT_REFUSED and "expired" in run.stderr
    revoked = create(data)
    revoked_id = admin_json(data, "token", "list")[-1]["id"]
    assert admin_json(data, "token", "revoke", revoked_id)["state"] == "revoked"
    run = with_token(client_factory("grace", address), 4, revoked, note)
    assert run.returncode == EXIT_REFUSED and "revoked" in run.stderr
    v3_refused = with_token(client_factory("grace3", address), 3, revoked, note)
    assert v3_refused.returncode == EXIT_REFUSED and "invitation token" in v3_refused.stderr
    team = create(data, "--name-pattern", "team-*", "--uses", "3")
    run = with_token(client_factory("heidi", address), 4, team, note)
    assert run.returncode == EXIT_REFUSED and "does not admit this name" in run.stderr
    assert with_token(client_factory("team-a", address), 3, team, note).returncode == 0
    assert with_token(client_factory("team-b", address), 4, team, note).returncode == 0
    unknown = admin(data, "token", "revoke", "000000000000")
    assert unknown.returncode == 4

    expected = {
        "no_token": 2,
        "token_used": 2,
        "bad_token": 2,
        "token_expired": 1,
        "token_revoked": 2,
        "token_name": 1,
    }
    for reason, count in expected.items():
        assert metric(server, "eft_registrations_refused_total", f'reason="{reason}"') == count
    for action, count in (("token-create", 5), ("token-revoke", 1), ("token-list", 2)):
        assert metric(server, "eft_admin_actions_total", f'action="{action}"') == count

    # Only hashes on the server's disk, and no token in its log.
    server.stop()
    stored = (data / TOKENS_FILE).read_text()
    assert (data / TOKENS_FILE).stat().st_mode & 0o777 == 0o600
    log = "".join(p.read_text() for p in server.log_path.parent.glob("server*.log"))
    assert "token" in log  # the logs are there (the refusals name their reasons)
    for token in (once, twice, expired, revoked, team):
        assert token not in stored and token not in log
        for path in data.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_one_use_raced_for_by_clients_of_both_versions(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--registration", "token")
    note = write_random_file(tmp_path / "note.bin", 100, seed=2)
    token = create(server.data_dir)
    racers = []
    for index in range(6):
        client = client_factory(f"racer{index}", server.address)
        client.protocol = 3 if index % 2 else 4
        client.extra_env = {"EFT_TOKEN": token}
        racers.append(client.start([note], "--retry-for", "0"))
    codes = sorted(finish(proc).returncode for proc in racers)
    assert codes == [0] + [EXIT_REFUSED] * 5
    (entry,) = admin_json(server.data_dir, "token", "list")
    assert (entry["used"], len(entry["used_by"])) == (1, 1)
    names = {c["name"] for c in admin_json(server.data_dir, "list-clients")}
    assert names == set(entry["used_by"])


def test_an_allowlist_takes_tokens_for_other_names_and_the_hello_flag_follows_the_policy(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--register-allow", "lab-*")
    data, address = server.data_dir, server.address
    note = write_random_file(tmp_path / "note.bin", 100, seed=3)
    assert with_token(client_factory("lab-1", address), 4, None, note).returncode == 0
    run = with_token(client_factory("guest", address), 4, None, note)
    assert run.returncode == EXIT_REFUSED and "allowlist" in run.stderr
    token = create(data)
    assert with_token(client_factory("guest", address), 4, token, note).returncode == 0
    # The allowlist admitted lab-2: the token is not spent on it.
    spare = create(data)
    assert with_token(client_factory("lab-2", address), 4, spare, note).returncode == 0
    assert admin_json(data, "token", "list")[-1]["used"] == 0

    peer = WireV4(address)
    peer.hello()
    assert peer.server_hello is not None and not peer.server_hello.open_registration
    peer.close()
    closed = server_factory("--registration", "closed", name="closed")
    peer = WireV4(closed.address)
    peer.hello()
    assert peer.server_hello is not None and not peer.server_hello.open_registration
    peer.close()
    opened = server_factory(name="open")
    peer = WireV4(opened.address)
    peer.hello()
    assert peer.server_hello is not None and peer.server_hello.open_registration
    peer.close()
