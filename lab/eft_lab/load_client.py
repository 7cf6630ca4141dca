"""``eft-lab-client``: a client that sends generated files in a loop, with metrics.

Each round makes a file of a random size, sends it in its own session (reconnecting
with the same me.info), and counts what happened. A share of attempts is damaged on
purpose (one ciphertext bit in the first packet), so the 901/902 retry paths run. Every
verified file is recorded in ``verified.jsonl`` (name, size, SHA-256) so the lab can
check the server's copy.

On SIGTERM it finishes the file in flight, stops, and keeps serving its metrics for
``--linger`` seconds so a last scrape can read the final counts.

Its name stays the one its identity in ``--workdir`` was made for, so a restarted client
(a container's) carries on as the same user. After each file it writes ``health.json``
there; ``eft-lab-client --health-check`` (a container's HEALTHCHECK) passes only while
this run has verified a file and the last files did not all fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from eft_client.config import check_name
from eft_client.errors import ClientError, IntegrityFailed
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_client.transfer import run
from eft_client.transfer_v4 import run_v4
from eft_protocol import __version__

from .corrupting_proxy import StreamCorrupter, policy

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.attempts = Counter("eft_client_attempts", "File attempts started.", registry=r)
        self.retries = Counter(
            "eft_client_retries", "Requests repeated, by reason.", ["reason"], registry=r
        )
        self.sent_bytes = Counter("eft_client_sent_bytes", "Ciphertext bytes sent.", registry=r)
        self.transfers = Counter(
            "eft_client_transfers", "Files finished, by outcome.", ["outcome"], registry=r
        )
        self.corrupted = Counter(
            "eft_client_corrupted_attempts", "Attempts damaged on purpose.", registry=r
        )
        self.duration = Histogram(
            "eft_client_transfer_duration_seconds",
            "From a file's first attempt to its verdict.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        for reason in ("crc_mismatch", "server_error"):
            self.retries.labels(reason)
        for outcome in ("verified", "gave_up", "failed"):
            self.transfers.labels(outcome)


class MetricsReporter(Reporter):
    """Turns the client's events into metric updates."""

    def __init__(self, metrics: ClientMetrics) -> None:
        self.metrics = metrics
        self._sent = 0
        self.started: float | None = None

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "file_started":
            self.metrics.attempts.inc()
            self._sent = 0
            if self.started is None:
                self.started = time.monotonic()
        elif kind == "crc_mismatch":
            self.metrics.retries.labels("crc_mismatch").inc()
        elif kind == "server_error":
            self.metrics.retries.labels("server_error").inc()

    def progress(self, sent: int) -> None:
        self.metrics.sent_bytes.inc(max(0, sent - self._sent))
        self._sent = sent


HEALTH_FILE = "health.json"
#: This many failed files in a row (not damaged on purpose: failed) make the client unhealthy.
UNHEALTHY_AFTER = 3


def _default_name(workdir: Path, protocol: int) -> str:
    """The name of the identity already in ``workdir``, else a new one for this host.

    A client restarted in the same directory (a container's restart) must keep its name:
    version 4 refuses to send as another name than ``me4.info``'s, and version 3 would
    register a new user at every start.
    """
    with contextlib.suppress(OSError, IndexError):
        info = workdir / ("me4.info" if protocol == 4 else "me.info")
        name = info.read_text().splitlines()[0].strip()
        if name:
            return name
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.")[:60]
    return f"lab-{host}-{random.randbytes(3).hex()}"


@dataclasses.dataclass
class Health:
    """What ``--health-check`` reads: this run's verified files and failures in a row."""

    path: Path
    verified: int = 0
    failed_in_a_row: int = 0

    def reset(self) -> None:
        """A new run starts unproven: a previous run's file must not speak for it."""
        self.path.unlink(missing_ok=True)

    def record(self, outcome: str) -> None:
        if outcome == "verified":
            self.verified += 1
        self.failed_in_a_row = self.failed_in_a_row + 1 if outcome == "failed" else 0
        state = {"verified": self.verified, "failed_in_a_row": self.failed_in_a_row}
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(state))
        partial.replace(self.path)  # atomic: the check never reads half a file


def health_problem(workdir: Path) -> str | None:
    """Why the client in ``workdir`` cannot be said to transfer, or None when it can."""
    try:
        state = json.loads((workdir / HEALTH_FILE).read_text())
    except (OSError, ValueError):
        return "no file finished yet in this run"
    if state.get("failed_in_a_row", 0) >= UNHEALTHY_AFTER:
        return f"the last {state['failed_in_a_row']} files failed"
    if state.get("verified", 0) < 1:
        return "no file verified yet in this run"
    return None


def _file_size(rng: random.Random, max_size: int) -> int:
    """Log-uniform sizes, so empty, tiny and large files all occur; 5% empty."""
    if rng.random() < 0.05 or max_size == 0:
        return 0
    return min(max_size, int(math.exp(rng.uniform(0, math.log(max_size + 1)))))


class LoadClient:
    def __init__(self, args: argparse.Namespace, metrics: ClientMetrics) -> None:
        self.args = args
        self.metrics = metrics
        self.workdir: Path = args.workdir
        self.rng = random.Random(args.seed)
        self.corrupt = policy(str(args.corrupt_rate), random.Random(self.rng.random()))
        self.stopping = asyncio.Event()
        self.health = Health(self.workdir / HEALTH_FILE)
        host, _, port = args.server.rpartition(":")
        self.settings = ClientSettings(
            host=host,
            port=int(port),
            name=args.name,
            config_dir=self.workdir,
            packet_size=args.packet_size,
        )

    async def run(self) -> None:
        deadline = time.monotonic() + self.args.duration if self.args.duration else math.inf
        sequence = 0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            sequence += 1
            await self._one_file(sequence)
            pause = self.rng.expovariate(self.args.rate) if self.args.rate > 0 else 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), min(pause, deadline - time.monotonic())
                )

    async def _one_file(self, sequence: int) -> None:
        slots = self.args.name_slots
        name = f"f{(sequence - 1) % slots if slots else sequence:06d}.bin"
        # The first three are the edge cases: empty, small, and over a thousand packets.
        size, packet_size = {
            1: (0, self.args.packet_size),
            2: (1500, self.args.packet_size),
            3: (64 * 1024, 64),
        }.get(sequence, (_file_size(self.rng, self.args.max_size), self.args.packet_size))
        data = self.rng.randbytes(size)
        path = self.workdir / "outbox" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        reporter = MetricsReporter(self.metrics)
        outcome = "verified"
        settings = dataclasses.replace(self.settings, packet_size=packet_size)
        try:
            if self.args.protocol == 4:
                # Version 4 has nothing to damage on purpose: a flipped bit fails the
                # record's tag and closes the connection (tests/v4 shows it).
                await run_v4(settings, [path], reporter)
            else:
                await run(
                    settings,
                    [path],
                    reporter,
                    make_outgoing_filter=lambda: StreamCorrupter(self._decide).feed,
                )
        except IntegrityFailed:
            outcome = "gave_up"
        except ClientError as exc:
            outcome = "failed"
            print(json.dumps({"event": "transfer_failed", "error": str(exc)}), flush=True)
            await asyncio.sleep(min(5.0, 0.5 + self.rng.random()))  # let a sick server breathe
        finally:
            path.unlink(missing_ok=True)
        self.metrics.transfers.labels(outcome).inc()
        self.health.record(outcome)
        if reporter.started is not None and outcome != "failed":
            self.metrics.duration.observe(time.monotonic() - reporter.started)
        if outcome == "verified":
            self._record(name, data)

    def _decide(self) -> bool:
        hit = self.corrupt()
        if hit:
            self.metrics.corrupted.inc()
        return hit

    def _record(self, name: str, data: bytes) -> None:
        me_info = "me4.info" if self.args.protocol == 4 else "me.info"
        client_id = (self.workdir / me_info).read_text().splitlines()[1]
        record = {
            "protocol": self.args.protocol,
            "client_id": client_id,
            "file": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with open(self.workdir / "verified.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")


def _env_default(name: str, default: str) -> str:
    return os.environ.get(f"EFT_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-lab-client", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--server", default=_env_default("SERVER", "127.0.0.1:1256"))
    parser.add_argument(
        "--name",
        default=os.environ.get("EFT_NAME") or None,
        help="default: the name of the identity in --workdir, else lab-HOST-RANDOM",
    )
    parser.add_argument("--workdir", type=Path, default=Path(_env_default("LAB_WORKDIR", ".")))
    parser.add_argument(
        "--rate", type=float, default=float(_env_default("LAB_RATE", "0.5")), help="files/s"
    )
    parser.add_argument(
        "--corrupt-rate",
        type=float,
        default=float(_env_default("LAB_CORRUPT_RATE", "0.1")),
        help="share of attempts damaged on purpose (0-1)",
    )
    parser.add_argument(
        "--max-size", type=int, default=int(_env_default("LAB_MAX_SIZE", "2097152"))
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(_env_default("LAB_DURATION", "0")),
        help="0: forever",
    )
    parser.add_argument(
        "--name-slots",
        type=int,
        default=int(_env_default("LAB_SLOTS", "0")),
        help="reuse this many file names (bounded disk); 0: a new name per file",
    )
    parser.add_argument(
        "--protocol",
        type=int,
        choices=(3, 4),
        default=int(_env_default("PROTOCOL", "3")),
        help="protocol version to speak (EFT_PROTOCOL; default 3)",
    )
    parser.add_argument(
        "--packet-size", type=int, default=int(_env_default("PACKET_SIZE", "65536"))
    )
    parser.add_argument(
        "--metrics-port", type=int, default=int(_env_default("METRICS_PORT", "9101"))
    )
    parser.add_argument("--metrics-host", default=_env_default("METRICS_HOST", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to keep serving metrics")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--health-check",
        action="store_true",
        help="exit 0 if the client in --workdir has verified a file and is not failing",
    )
    return parser


async def _main(args: argparse.Namespace) -> None:
    metrics = ClientMetrics()
    server, _thread = start_http_server(
        args.metrics_port, addr=args.metrics_host, registry=metrics.registry
    )
    port = server.server_address[1]
    print(json.dumps({"event": "listening", "port": port, "name": args.name}), flush=True)
    client = LoadClient(args, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, client.stopping.set)
    await client.run()
    print(json.dumps({"event": "stopped"}), flush=True)
    if args.linger:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(args.linger)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.health_check:
        problem = health_problem(args.workdir)
        print(problem or "healthy")
        return 1 if problem else 0
    if args.name is None:
        args.name = _default_name(args.workdir, args.protocol)
    try:
        check_name(args.name)
    except ClientError as exc:
        parser.error(str(exc))
    if not 0 <= args.corrupt_rate <= 1:
        parser.error("--corrupt-rate must be between 0 and 1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    Health(args.workdir / HEALTH_FILE).reset()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
