"""eft-admin beside a running server, while uploads run: every action goes through the
server's control socket, so its registry cache and revocations see it at once; nothing
in flight is lost and the registry stays consistent."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from eft_server.control import SOCKET_FILE, request, short_path
from tests.support.processes import ClientDir, ServerProcess, finish, write_random_file
from tests.support.raw_client import RawClient

from .support import admin, admin_json, metric, send

METRICS = ("--metrics-host", "127.0.0.1", "--metrics-port", "0")


def test_admin_actions_while_uploads_run(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(*METRICS)
    data = server.data_dir
    note = write_random_file(tmp_path / "note.bin", 5000, seed=3)
    big = write_random_file(tmp_path / "big.bin", 8 << 20, seed=4)
    bob, carol = client_factory("bob", server.address), client_factory("carol", server.address)
    assert send(bob, 3, note).returncode == 0
    assert send(carol, 4, note).returncode == 0

    # alice (version 3) is half-way through a file while the operator acts ...
    payload = write_random_file(tmp_path / "payload.bin", 200_000, seed=5).read_bytes()
    alice = RawClient(server.address)
    alice.handshake("alice")
    assert alice.session is not None
    sender = alice.session.begin_file("payload.bin", len(payload), 4096)
    frames = [*sender.feed(payload), *sender.finish()]
    alice.send(*frames[: len(frames) // 2])
    # ... and dave (version 4) sends a bigger one meanwhile.
    dave = client_factory("dave", server.address)
    dave.protocol = 4
    dave_upload = dave.start([big], "--retry-for", "0")

    names = {c["name"] for c in admin_json(data, "list-clients")}
    assert {"alice", "bob", "carol"} <= names, "alice's registration is seen at once"
    assert admin_json(data, "revoke", "bob")["revoked"]
    assert admin_json(data, "revoke", "carol")["version"] == 4
    assert admin_json(data, "remove-file", "carol", "note.bin")["removed"]
    assert not (data / "v4" / "files" / carol.client_id_hex / "note.bin").exists()
    summary = admin_json(data, "export", str(tmp_path / "export"))
    assert summary["missing"] == 0
    assert server.proc is not None and server.proc.poll() is None

    alice.send(*frames[len(frames) // 2 :])
    reply = alice.session.receive(alice.receive())
    alice.send(*reply.send)
    assert alice.session.receive(alice.receive()).file_verified
    alice.close()
    assert finish(dave_upload).returncode == 0
    assert server.stored(alice.client_id.hex(), "payload.bin").read_bytes() == payload
    stored = data / "v4" / "files" / dave.client_id_hex / "big.bin"
    assert stored.read_bytes() == big.read_bytes()

    assert send(bob, 3, note).returncode == 9, "revoked: 1606 on reconnect"
    assert send(carol, 4, note).returncode == 4, "revoked: the v4 login is refused"
    for action, count in (("revoke", 2), ("remove-file", 1), ("list-clients", 1), ("export", 1)):
        assert metric(server, "eft_admin_actions_total", f'action="{action}"') == count
    logged = [r["action"] for r in server.logs() if r.get("event") == "admin_action"]
    assert logged == ["list-clients", "revoke", "revoke", "remove-file", "export"]

    server.stop()  # the registry on disk says what the running server said
    files = {(f["client"], f["file"]): f["size"] for f in admin_json(data, "list-files")}
    assert files == {
        ("alice", "payload.bin"): 200_000,
        ("bob", "note.bin"): 5000,
        ("dave", "big.bin"): 8 << 20,
    }
    revoked = {c["name"] for c in admin_json(data, "list-clients") if c["revoked"]}
    assert revoked == {"bob", "carol"}


def test_the_control_socket_is_private_and_works_from_a_long_path(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(name="a-data-directory-with-a-long-name-" + "x" * 60)
    socket_path = server.data_dir / "eft-admin.sock"
    assert len(str(socket_path)) > 108
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    done = admin(server.data_dir, "list-clients", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    server.stop()
    assert not socket_path.exists()


def test_the_control_socket_answers_bad_requests_and_keeps_serving(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    data = server.data_dir
    assert request(data, "format-disk", {}, 30) == {
        "ok": False,
        "error": "bad_request",
        "message": "unknown action 'format-disk'",
    }
    with short_path(data / SOCKET_FILE) as name, socket.socket(socket.AF_UNIX) as sock:
        sock.connect(name)
        sock.sendall(b"not json\n")
        assert json.loads(sock.makefile("rb").readline())["error"] == "bad_request"
    assert request(data, "revoke", {}, 30)["error"] == "bad_request", "no client given"
    assert request(data, "list-files", {}, 30) == {"ok": True, "result": {"files": []}}
