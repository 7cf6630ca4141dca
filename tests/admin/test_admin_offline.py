"""eft-admin on a data directory no server holds: listings, show-key, export, revoke,
free-name, remove-file, and a clear exit code for every bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.processes import ClientDir, ServerProcess, write_random_file

from .support import admin, admin_json, send


def test_offline_actions_and_what_the_restarted_server_makes_of_them(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory()
    fingerprint = next(r for r in server.logs() if r["event"] == "listening")["fingerprint"]
    data = server.data_dir
    report = write_random_file(tmp_path / "report.bin", 300_000, seed=1)
    notes = write_random_file(tmp_path / "notes.bin", 1000, seed=2)
    alice, bob = client_factory("alice", server.address), client_factory("bob", server.address)
    carol = client_factory("carol", server.address)
    assert send(alice, 3, report, notes).returncode == 0
    assert send(bob, 4, report).returncode == 0
    assert send(carol, 4, notes).returncode == 0
    server.stop()

    clients = {c["name"]: c for c in admin_json(data, "list-clients")}
    assert set(clients) == {"alice", "bob", "carol"}
    assert (clients["alice"]["version"], clients["alice"]["files"]) == (3, 2)
    assert clients["alice"]["bytes"] == 301_000 and clients["alice"]["key_exchanged"]
    assert clients["alice"]["client_id"] == alice.client_id_hex
    assert (clients["bob"]["version"], clients["bob"]["bytes"]) == (4, 300_000)
    assert clients["bob"]["last_seen"] and not clients["bob"]["revoked"]
    files = admin_json(data, "list-files")
    assert sorted((f["client"], f["version"], f["file"], f["size"]) for f in files) == [
        ("alice", 3, "notes.bin", 1000),
        ("alice", 3, "report.bin", 300_000),
        ("bob", 4, "report.bin", 300_000),
        ("carol", 4, "notes.bin", 1000),
    ]
    table = admin(data, "list-files")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == [
        "client",
        "version",
        "file",
    ]
    assert admin_json(data, "show-key")["fingerprint"] == fingerprint

    exported = tmp_path / "handback"
    summary = admin_json(data, "export", str(exported))
    assert (summary["files"], summary["missing"], summary["clients"]) == (4, 0, 3)
    registry = json.loads((exported / "registry.json").read_text())
    for row in registry["files"]:
        source = report if row["file"] == "report.bin" else notes
        assert (exported / row["exported_as"]).read_bytes() == source.read_bytes()
    assert admin(data, "export", str(exported)).returncode == 7, "not an empty directory"

    assert admin_json(data, "revoke", "bob")["revoked"]
    assert admin_json(data, "revoke", alice.client_id_hex)["name"] == "alice"
    assert admin(data, "free-name", "carol").returncode == 7, "carol still has a file"
    assert admin_json(data, "remove-file", "carol", "notes.bin")["removed"]
    assert admin(data, "remove-file", "carol", "notes.bin").returncode == 5
    assert admin_json(data, "free-name", "carol")["freed"]
    assert {c["name"]: c["revoked"] for c in admin_json(data, "list-clients")} == {
        "alice": True,
        "bob": True,
    }

    server.start()
    v3 = send(alice, 3, notes)
    assert v3.returncode == 9 and "reconnect_denied" in v3.kinds(), v3.stderr  # 1606
    assert send(bob, 4, notes).returncode == 4, "revoked: the v4 login is refused"
    newcomer = client_factory("carol-again", server.address)
    newcomer.name = "carol"
    assert send(newcomer, 4, notes).returncode == 0, "the freed name is free"
    assert server.stored(alice.client_id_hex, "report.bin").read_bytes() == report.read_bytes()


def test_bad_inputs_have_their_exit_codes(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    assert admin(tmp_path / "missing", "list-clients").returncode == 3
    (tmp_path / "empty").mkdir()
    assert admin(tmp_path / "empty", "list-files").returncode == 3, "no registry in it"
    server = server_factory()
    note = write_random_file(tmp_path / "n.bin", 10)
    twin_v3, twin_v4 = (
        client_factory("twin", server.address),
        client_factory("twin4", server.address),
    )
    twin_v4.name = "twin"
    assert send(twin_v3, 3, note).returncode == 0
    assert send(twin_v4, 4, note).returncode == 0
    server.stop()
    data = server.data_dir
    done = admin(data, "revoke", "nobody")
    assert done.returncode == 4 and "nobody" in done.stderr
    assert admin(data, "remove-file", "twin", "n.bin").returncode == 6, "both versions"
    assert admin(data, "remove-file", twin_v4.client_id_hex, "other").returncode == 5
    assert admin(data, "free-name", "twin", "--version", "4", "--remove-files").returncode == 0
    assert admin(data, "bogus").returncode == 2
    assert admin(tmp_path / "empty", "show-key").returncode == 3
