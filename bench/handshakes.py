"""The server's CPU per version-4 handshake, over real sockets (issue 18: ≤ 0.3 ms).

Anyone may send message 1, so what one costs the server bounds what a flood of them
can take. Two batches against one fresh server, one connection after another:

- **message 1 answered**: connect, send message 1, read message 2, close. The server
  makes an ephemeral key, two DH and its hello: the unit of an anonymous flood.
- **full handshake and log-in**: messages 1 to 3 with a key registered beforehand
  (827), the welcome record read, close: what every legitimate session pays first.
- **message 1 under load (cookie reply)**: on a second server that asks for cookies
  always (``--cookies-above 0``): connect, send a fresh message 1, read the cookie
  reply (no DH), close. What a flood of message 1s costs a server under load.

- **log-in under a message-1 flood**: on that second server, full handshakes and
  log-ins one after another (each follows its cookie reply), first alone, then while
  ``eft-attack hello-flood`` sends message 1s from 127.0.0.3: the wall time of each,
  median and p90 (the flood's process shares the machine, so CPU is not separable).

The first server runs with ``--cookies-above off`` so that its figures are the DH path
whatever the batch's rate.

The server's user + system CPU (from /proc) over a batch, divided by its count; the
client's CPU (this process) is measured apart, since it shares the two cores.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from eft_attacks.common import ServerLink
from eft_attacks.v4 import V4Client
from eft_protocol.codes import RequestCode
from eft_protocol.noise import KeyPair
from eft_protocol.v4.handshake import Offer, cookie_reply_header, hello_header

from .common import bench_env, median, python
from .eft import EftServer

#: Connections per batch: enough that the server's per-batch CPU (10 ms ticks) is
#: read to about 1 %.
HANDSHAKES = 400
#: Target of issue 18 for the responder's whole handshake, in milliseconds of CPU.
TARGET_MS = 0.3


async def _message_1(address: str) -> None:
    client = await V4Client.open(address)
    try:
        await client.hello()
    finally:
        await client.link.close()


async def _cookie_reply(address: str) -> None:
    """A fresh message 1 to a server under load: its answer must be a cookie reply."""
    link = await ServerLink.open(address)
    try:
        offer = Offer().encode()
        await link.send(hello_header() + KeyPair.generate().public + offer)
        frame = await link.receive()
        if frame.raw[:7] != cookie_reply_header():
            raise RuntimeError(f"message 1 answered {frame.raw[:7].hex()}, not a cookie reply")
    finally:
        await link.close()


async def _intent(address: str, name: str, key: KeyPair, code: RequestCode, answer: int) -> None:
    """A full handshake whose message 3 carries ``code`` (825 or 827), answered ``answer``."""
    client = V4Client(await ServerLink.open(address), key)
    try:
        await client.hello()
        welcome = await client.intent(name, code)
        if welcome != answer:
            raise RuntimeError(f"{int(code)} answered {welcome}, not {answer}")
    finally:
        await client.link.close()


async def _batch(server: EftServer, count: int, one: Any) -> dict[str, float]:
    """CPU milliseconds per connection, the server's and this process's."""
    server.mark()
    client_start = time.process_time()
    started = time.perf_counter()
    for _ in range(count):
        await one()
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_start
    server_cpu = server.usage().cpu_seconds
    return {
        "server_cpu_ms": round(server_cpu / count * 1000, 3),
        "client_cpu_ms": round(client_cpu / count * 1000, 3),
        "per_s": round(count / seconds, 1),
    }


#: Where the message-1 flood comes from (Linux lets a socket bind any 127.0.0.x).
FLOOD_SOURCE = "127.0.0.3"


async def _latencies(count: int, one: Any) -> dict[str, float]:
    """Wall milliseconds of each of ``count`` calls: median and p90."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        await one()
        seconds.append(time.perf_counter() - started)
    deciles = statistics.quantiles(seconds, n=10)
    return {"p50_ms": round(median(seconds) * 1000, 3), "p90_ms": round(deciles[-1] * 1000, 3)}


def _under_flood(workdir: Path, server: EftServer, count: int) -> dict[str, Any]:
    """Log-ins to ``server`` (which asks for cookies) alone, then under a message-1 flood."""
    key, name = KeyPair.generate(), "flood-bench"
    asyncio.run(_intent(server.address, name, key, RequestCode.REGISTER, 1600))

    def login() -> Any:
        return _intent(server.address, name, key, RequestCode.RECONNECT, 1605)

    idle = asyncio.run(_latencies(count, login))
    log = workdir / "hello-flood.log"
    command = [python(), "-m", "eft_attacks", "hello-flood", "--json", "--protocol", "4"]
    command += ["--target", server.address, "--source", FLOOD_SOURCE, "--duration", "600"]
    with open(log, "wb") as out:
        flood = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=bench_env())
    try:
        while b'"event": "step"' not in log.read_bytes():  # flooding from now on
            if flood.poll() is not None:
                raise RuntimeError(f"the flood stopped: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # its connections under way
        flooded = asyncio.run(_latencies(count, login))
    finally:
        flood.kill()
        flood.wait()
    return {
        "idle": idle,
        "flood": flooded,
        "slowdown_p50": round(flooded["p50_ms"] / idle["p50_ms"], 2),
    }


def measure(workdir: Path, runs: int = 3, count: int = HANDSHAKES) -> dict[str, Any]:
    """``runs`` batches of each kind on one server; the median and the spread."""
    server = EftServer(workdir / "handshakes", args=("--cookies-above", "off")).start()
    loaded = EftServer(workdir / "handshakes-cookies", args=("--cookies-above", "0")).start()
    try:
        key, name = KeyPair.generate(), "handshake-bench"
        asyncio.run(_intent(server.address, name, key, RequestCode.REGISTER, 1600))
        kinds = {
            "message 1 answered": lambda: _message_1(server.address),
            "full handshake and log-in": lambda: _intent(
                server.address, name, key, RequestCode.RECONNECT, 1605
            ),
            "message 1 under load (cookie reply)": lambda: _cookie_reply(loaded.address),
        }
        results: dict[str, Any] = {"connections_per_batch": count, "target_ms": TARGET_MS}
        for kind, one in kinds.items():
            target = loaded if "cookie" in kind else server
            batches = [asyncio.run(_batch(target, count, one)) for _ in range(runs)]
            cpu = [b["server_cpu_ms"] for b in batches]
            results[kind] = {
                "server_cpu_ms": median(cpu),
                "server_cpu_ms_min": min(cpu),
                "server_cpu_ms_max": max(cpu),
                "client_cpu_ms": median([b["client_cpu_ms"] for b in batches]),
                "per_s": median([b["per_s"] for b in batches]),
            }
        results["log-in under a message-1 flood"] = _under_flood(workdir, loaded, count)
        return results
    finally:
        server.stop()
        loaded.stop()
