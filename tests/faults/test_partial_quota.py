"""Quotas on unfinished version-4 uploads, with real server, proxy and client processes.

A proxy cuts the first connection through it halfway into a file and the client, told
not to retry, gives up: the server keeps the upload for a resume. With room for one
unfinished upload per client, a second one drops the first (the oldest). Sent again,
the kept one resumes; the dropped one is sent from its start and the client says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hostile.helpers import Metrics, MiB, wait_until
from tests.support.processes import ClientDir, ProxyProcess, ServerProcess, write_random_file

SIZE = 8 * MiB


def closed_connections(server: ServerProcess) -> int:
    return sum(1 for record in server.logs() if record.get("event") == "connection_closed")


def partial_uploads(server: ServerProcess, client: ClientDir) -> list[Path]:
    return sorted((server.data_dir / "v4" / "partial" / client.client_id_hex).glob("*.part"))


def leave_unfinished(
    server: ServerProcess, client: ClientDir, proxy: ProxyProcess, source: Path
) -> None:
    """Send ``source`` through ``proxy``, which cuts it halfway; no retry. Returns once
    the server has closed that connection (and kept or dropped what it had)."""
    closed = closed_connections(server)
    client.server = proxy.address
    run = client.run([source], "--retries", "0")
    assert run.returncode != 0, "the cut did not stop the client"
    wait_until(lambda: closed_connections(server) > closed, "the server to close the cut")


def test_the_oldest_unfinished_upload_beyond_the_quota_is_dropped_and_sent_again(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    server = server_factory("--metrics-port", "0", "--max-partial-uploads-per-client", "1")
    client = client_factory("quota", server.address)
    client.protocol = 4
    assert client.run([write_random_file(tmp_path / "hello.txt", 10)]).returncode == 0
    metrics = Metrics(server)
    first = write_random_file(tmp_path / "first.bin", SIZE, seed=71)
    second = write_random_file(tmp_path / "second.bin", SIZE, seed=72)
    first_proxy = proxy_factory(server.address, "never", "--cut-after", str(SIZE // 2))
    second_proxy = proxy_factory(server.address, "never", "--cut-after", str(SIZE // 2))

    leave_unfinished(server, client, first_proxy, first)
    assert len(partial_uploads(server, client)) == 1
    leave_unfinished(server, client, second_proxy, second)
    assert len(partial_uploads(server, client)) == 1, "the quota allows one"
    dropped = [r for r in server.logs() if r.get("event") == "partial_upload_dropped"]
    assert [(r["client_id"], r["reason"]) for r in dropped] == [
        (client.client_id_hex, "client_uploads")
    ]
    assert dropped[0]["bytes"] >= MiB
    assert metrics.delta("eft_partial_uploads_dropped_total", reason="client_uploads") == 1
    assert metrics.delta("eft_partial_upload_dropped_bytes_total") == dropped[0]["bytes"]
    assert Metrics(server).get("eft_partial_uploads") == 1

    # The one kept resumes where it stopped (first: a new upload would count, and
    # with room for one it would drop this one in turn).
    client.server = second_proxy.address
    resumed = client.run([second])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.kinds() and "restarting" not in resumed.kinds()
    stored = server.data_dir / "v4" / "files" / client.client_id_hex
    assert (stored / "second.bin").read_bytes() == second.read_bytes()
    # The dropped upload: the server keeps nothing of it, the client says so and sends
    # it all again (through the same address: its upload id is kept per server).
    client.server = first_proxy.address
    again = client.run([first])
    assert again.returncode == 0, again.stderr
    assert "restarting" in again.kinds() and "resuming" not in again.kinds()
    assert (stored / "first.bin").read_bytes() == first.read_bytes()
    assert partial_uploads(server, client) == []
