"""EFT-15: floods of unauthenticated work, told apart by source address (issue 18).

The flood comes from 127.0.0.3 (``eft-attack hello-flood`` and ``flood --source``), the
legitimate client from 127.0.0.2 (``--source-address``; the flood tool's own probes from
127.0.0.1). Version 4 only: message 1 and its DH are version 4's.
What is counted comes from the server's metrics (``eft_handshake_replies_total{kind}``:
message 2s, each a DH, and cookie replies; ``eft_address_limit_refusals_total{limit}``),
never from a clock; the slowdown of the legitimate upload is printed, not asserted.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.attacks.conftest import SERVER_ARGS, Attacks, expected, stored
from tests.support.processes import ClientDir, ServerProcess, write_random_file

ATTACKER = "127.0.0.3"
VICTIM = ("--source-address", "127.0.0.2")
V4 = 4


@pytest.fixture
def v4_server(server_factory: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    def make(*args: str) -> ServerProcess:
        return server_factory(
            *SERVER_ARGS[V4], "--metrics-port", "0", "--metrics-host", "127.0.0.1", *args
        )

    return make


@pytest.fixture
def v4_attacks(tmp_path: Path) -> Iterator[Callable[[], Attacks]]:
    made: list[Attacks] = []

    def make() -> Attacks:
        made.append(Attacks(tmp_path, V4))
        return made[-1]

    yield make
    for attacks in made:
        for process in attacks.started:
            process.stop()


def _victim(client_factory: Callable[..., ClientDir], server: ServerProcess) -> ClientDir:
    client = client_factory("alice", server.address)
    client.protocol = V4
    return client


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """One series of the server's /metrics (its port from the ``listening`` line)."""
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    url = f"http://127.0.0.1:{listening['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$"
        if labels
        else (rf"^{re.escape(name)} (\S+)$")
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no {name}{labels} in the server's metrics"
    return float(match[1])


def _await_metric(server: ServerProcess, name: str, at_least: float, **labels: str) -> None:
    """Polled (another process): the server counted at least that much."""
    deadline = time.monotonic() + 60
    while metric(server, name, **labels) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} never reached {at_least}"
        time.sleep(0.05)


def _hellos(server: ServerProcess, kind: str) -> float:
    return metric(server, "eft_handshake_replies_total", kind=kind)


def test_a_message_1_flood_gets_cookie_replies_while_an_upload_goes_through(
    v4_server: Callable[..., ServerProcess],
    v4_attacks: Callable[[], Attacks],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """Cookies always (``--cookies-above 0``): every message 1 without a valid cookie
    gets a cookie reply, so the server's DH count is exactly the legitimate client's
    handshakes, whatever the flood sends (replayed byte for byte, and fresh)."""
    server = v4_server("--cookies-above", "0")
    victim = _victim(client_factory, server)
    idle_file = write_random_file(tmp_path / "idle.bin", 8 << 20, seed=1)
    flooded_file = write_random_file(tmp_path / "flooded.bin", 8 << 20, seed=2)
    started = time.monotonic()
    idle = victim.run([idle_file], "--timeout", "30", "--retries", "0", *VICTIM)
    idle_seconds = time.monotonic() - started
    assert idle.returncode == 0, idle.stderr
    dh_before = _hellos(server, "server_hello")

    flood = v4_attacks().start(
        "hello-flood", "--target", server.address, "--source", ATTACKER, "--duration", "600"
    )
    _await_metric(server, "eft_handshake_replies_total", 50, kind="cookie")  # flooding
    started = time.monotonic()
    run = victim.run([flooded_file], "--timeout", "30", "--retries", "0", *VICTIM)
    flooded_seconds = time.monotonic() - started
    assert flood.proc.poll() is None, "the flood must still be on"
    flood.stop()

    assert run.returncode == 0, run.stderr
    assert stored(server, V4, victim.client_id_hex, "flooded.bin").read_bytes() == (
        flooded_file.read_bytes()
    )
    connections = sum(1 for e in run.events if e.get("event") == "connected")
    peers = {str(r["peer"]).rsplit(":", 1)[0] for r in server.logs() if "peer" in r}
    assert {"127.0.0.2", ATTACKER} <= peers  # told apart by their addresses
    assert _hellos(server, "server_hello") - dh_before == connections  # the victim's only
    cookies = _hellos(server, "cookie")
    assert cookies >= 50
    print(
        f"8 MiB v4 upload: idle {idle_seconds:.2f} s, under a message-1 flood "
        f"{flooded_seconds:.2f} s ({flooded_seconds / idle_seconds:.1f}x); "
        f"{cookies:.0f} cookie replies, {connections} DH for the victim"
    )


def test_under_load_the_flood_buys_no_dh_its_own_verdict(
    v4_server: Callable[..., ServerProcess], v4_attacks: Callable[[], Attacks]
) -> None:
    """A server that asks for cookies once it answers more than one message 1 a second:
    the flood's own count says most of its message 1s got a cookie reply, not a DH."""
    server = v4_server("--cookies-above", "1")

    result = v4_attacks().run(
        "hello-flood", "--target", server.address, "--source", ATTACKER, "--duration", "3"
    )

    assert result.succeeded is expected("EFT-15 message 1 flood buys the server's DH", V4)
    assert result.result["cookie"] > result.result["server_hello"]
    assert _hellos(server, "cookie") == result.result["cookie"]


def test_a_flood_that_follows_cookies_is_held_to_its_address_rate(
    v4_server: Callable[..., ServerProcess],
    v4_attacks: Callable[[], Attacks],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """A careful flood answers each cookie reply with the cookie, as a client does: the
    per-address DH rate holds it, and a client from another address is not held."""
    server = v4_server("--cookies-above", "0", "--handshake-rate-per-address", "5")
    flood = v4_attacks().start(
        "hello-flood",
        "--target",
        server.address,
        "--source",
        ATTACKER,
        "--duration",
        "600",
        "--follow-cookies",
    )
    _await_metric(server, "eft_address_limit_refusals_total", 20, limit="handshake_rate")

    report = write_random_file(tmp_path / "report.bin", 1 << 20)
    victim = _victim(client_factory, server)
    run = victim.run([report], "--timeout", "30", "--retries", "0", *VICTIM)

    assert flood.proc.poll() is None, "the flood must still be on"
    flood.stop()
    assert run.returncode == 0, run.stderr
    assert stored(server, V4, victim.client_id_hex, "report.bin").read_bytes() == (
        report.read_bytes()
    )


def test_connections_in_handshake_are_limited_per_address(
    v4_server: Callable[..., ServerProcess], v4_attacks: Callable[[], Attacks]
) -> None:
    """Silent connections from 127.0.0.3 beyond ``--max-handshakes-per-address`` are
    refused at once; the flood tool's own probes (new registrations from 127.0.0.1) all
    get in, well below ``--max-connections``."""
    server = v4_server("--max-handshakes-per-address", "10", "--handshake-timeout", "600")

    result = v4_attacks().run(
        "flood",
        "--target",
        server.address,
        "--connections",
        "30",
        "--source",
        ATTACKER,
        "--hold",
        "3",
    )

    assert result.succeeded is expected("EFT-15 idle sockets lock clients out", V4)
    assert result.result["probes"] > 0
    refused = metric(server, "eft_address_limit_refusals_total", limit="handshakes_in_flight")
    assert refused > 0
    assert metric(server, "eft_connections_shed_total", reason="unauthenticated") == 0
