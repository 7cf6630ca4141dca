"""Rotating the version-4 server key with real processes: clients that connect before,
during and after the grace period (docs/OPERATIONS.md, docs/PROTOCOL-v4.md §4)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from eft_lab.processes import clean_env
from eft_server.server_key import KEY_FILE, NEXT_KEY_FILE, RETIRED_PREFIX
from tests.support.processes import ClientDir, ClientRun, ServerProcess, write_random_file

from .support import admin, admin_json, metric

METRICS = ("--metrics-host", "127.0.0.1", "--metrics-port", "0")
EXIT_SERVER_KEY = 7


def send4(client: ClientDir, *files: Path) -> ClientRun:
    client.protocol = 4
    return client.run(list(files), "--retry-for", "0")


def send4_lines(client: ClientDir, *files: Path) -> subprocess.CompletedProcess[str]:
    """As a person runs it: lines, not JSON, so that what stderr says can be read."""
    client.protocol = 4
    command = [arg for arg in client.command(list(files), "--retry-for", "0") if arg != "--json"]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def pins(client: ClientDir) -> list[str]:
    return (client.path / "known_servers").read_text().splitlines()


def test_rotation_before_during_and_after_the_grace_period(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory(*METRICS)
    data, address = server.data_dir, server.address
    note = write_random_file(tmp_path / "note.bin", 3000, seed=1)
    old = admin_json(data, "show-key")
    assert old["next_fingerprint"] is None
    k0 = old["fingerprint"]

    # Before: two clients pin the current key.
    early, missed = client_factory("early", address), client_factory("missed", address)
    for client in (early, missed):
        run = send4(client, note)
        assert run.returncode == 0, run.stderr
        assert "server_key_rotating" not in run.kinds()
        assert pins(client) == [f"{address} {k0}"]

    # The operator makes the next key; the running server announces it at once.
    rotated = admin_json(data, "rotate-key")
    k1 = rotated["next_fingerprint"]
    assert rotated["fingerprint"] == k0 and k1.startswith("SHA256:") and k1 != k0
    assert (data / NEXT_KEY_FILE).stat().st_mode & 0o777 == 0o600
    shown = admin_json(data, "show-key")
    assert (shown["fingerprint"], shown["next_fingerprint"]) == (k0, k1)
    again = admin(data, "rotate-key")
    assert again.returncode == 7 and "already holds the next key" in again.stderr

    # During: a pinned client learns the next key, says so once on stderr.
    first = send4_lines(early, note)
    assert first.returncode == 0, first.stderr
    assert f"server key rotating: now trusting {k1} as well as {k0}" in first.stderr
    assert pins(early) == [f"{address} {k0}", f"{address} {k1} next"]
    second = send4_lines(early, note)
    assert second.returncode == 0 and "server key rotating" not in second.stderr
    # A client meeting the server for the first time during the grace period pins the
    # current key and learns the next one.
    fresh = client_factory("fresh", address)
    run = send4(fresh, note)
    assert run.returncode == 0 and {"server_pinned", "server_key_rotating"} <= set(run.kinds())
    assert pins(fresh) == [f"{address} {k0}", f"{address} {k1} next"]

    # After: the next key becomes the current one, the old one is kept aside.
    retired = admin_json(data, "rotate-key", "--retire")
    assert (retired["fingerprint"], retired["retired_fingerprint"]) == (k1, k0)
    assert retired["next_fingerprint"] is None and not (data / NEXT_KEY_FILE).exists()
    assert Path(retired["retired_path"]).name.startswith(RETIRED_PREFIX)
    assert admin_json(data, "show-key")["fingerprint"] == k1
    no_next = admin(data, "rotate-key", "--retire")
    assert no_next.returncode == 7 and "no next key" in no_next.stderr

    # The client that learned the next key moves its pin to it, and says so.
    moved = send4_lines(early, note)
    assert moved.returncode == 0, moved.stderr
    assert f"server key rotating: now trusting {k1} instead of {k0}" in moved.stderr
    assert pins(early) == [f"{address} {k1}"]
    assert send4(early, note).returncode == 0
    # The client that never saw the announcement stops before it says who it is.
    refused = send4(missed, note)
    assert refused.returncode == EXIT_SERVER_KEY
    assert f"presented {k1}" in refused.stderr and k0 in refused.stderr
    assert pins(missed) == [f"{address} {k0}"]

    for action, count in (("rotate-key", 1), ("retire-key", 1), ("show-key", 3)):
        assert metric(server, "eft_admin_actions_total", f'action="{action}"') == count
    changes = [r for r in server.logs() if r.get("event") == "server_key_changed"]
    assert [(r["fingerprint"], r["next_fingerprint"]) for r in changes] == [
        (k0, k1),
        (k1, None),
    ]


def test_a_rotation_made_offline_is_served_after_a_restart(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory()
    data, address = server.data_dir, server.address
    note = write_random_file(tmp_path / "note.bin", 100, seed=2)
    alice = client_factory("alice", address)
    assert send4(alice, note).returncode == 0
    server.stop()
    k0 = (data / KEY_FILE).read_text()

    k1 = admin_json(data, "rotate-key")["next_fingerprint"]  # offline, under the data lock
    server.start()
    listening = [r for r in server.logs() if r.get("event") == "listening"][-1]
    assert listening["next_fingerprint"] == k1
    run = send4(alice, note)
    assert run.returncode == 0 and "server_key_rotating" in run.kinds()
    server.stop()

    admin_json(data, "rotate-key", "--retire")
    retired = [p for p in data.iterdir() if p.name.startswith(RETIRED_PREFIX)]
    assert [p.read_text() for p in retired] == [k0]
    server.start()
    run = send4(alice, note)
    assert run.returncode == 0 and "server_key_rotated" in run.kinds()
    assert pins(alice) == [f"{address} {k1}"]
