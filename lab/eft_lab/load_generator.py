"""``python -m eft_lab.load_generator``: many concurrent client sessions in one process.

Each simulated client is the real client code (``eft_client.transfer.run``) with its own
config directory (``me.info``) and user name, all on one asyncio loop; they share one
RSA key made at start-up (RSA-1024 generation costs ~100 ms, too much times 500). A
process per client would cost ~40 MB each; this costs a few hundred KB per client.

It writes each client's files first (random sizes, reproducible from ``--seed``), then
runs every client at once and prints JSON lines on stdout::

    {"event": "registered", "clients": 500, "seconds": 1.9}     (with --register-first)
    {"event": "report", "clients": 500, "successes": 500, "failures": 0, ...}

The report also lists, per client, its client id and the files it saw verified, so a
test can compare them with the server's copies. Exit status: 0 when every client
succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from Crypto.PublicKey import RSA

from eft_client import config
from eft_client.errors import ClientError
from eft_client.identity import read_identity
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_client.transfer import run
from eft_protocol import __version__, crypto


class RecordingReporter(Reporter):
    """Keeps what the report needs from one client's events."""

    def __init__(self) -> None:
        self.verified: list[str] = []
        self.connection_retries = 0
        self.server_errors = 0

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "file_verified":
            self.verified.append(str(fields["file"]))
        elif kind == "connection_retry":
            self.connection_retries += 1
        elif kind == "server_error":
            self.server_errors += 1


@dataclass
class ClientResult:
    name: str
    client_id: str | None = None
    files: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    seconds: float = 0.0
    connection_retries: int = 0
    server_errors: int = 0
    error: str | None = None
    exit_code: int = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-load", description="Run N concurrent eft client sessions in one process."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--files-per-client", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=0, help="bytes (default 0)")
    parser.add_argument("--max-size", type=int, default=64 * 1024, help="bytes (default 64 KiB)")
    parser.add_argument("--packet-size", type=int, default=64 * 1024)
    parser.add_argument("--workdir", type=Path, required=True, help="config dirs and files")
    parser.add_argument("--name-prefix", default="load")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retries", type=int, default=3, help="reconnects per client")
    parser.add_argument("--backoff", type=float, default=0.5, help="first backoff, seconds")
    parser.add_argument("--backoff-cap", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per answer, seconds")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument(
        "--register-first",
        action="store_true",
        help="register every client (no files) before any transfer starts",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (default uvloop, as eft-client; asyncio where uvloop is absent)",
    )
    parser.add_argument("--report", type=Path, help="also write the report here")
    return parser


def raise_file_limit(wanted: int) -> None:
    """Two descriptors per client at most (socket, file being read), plus slack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def prepare(args: argparse.Namespace) -> list[tuple[ClientSettings, list[Path]]]:
    host, port = config.parse_address(args.server)
    rng = random.Random(args.seed)
    clients = []
    for index in range(args.clients):
        name = f"{args.name_prefix}-{index:04d}"
        directory = args.workdir / name
        files_dir = directory / "files"
        files_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for number in range(args.files_per_client):
            path = files_dir / f"{name}-{number}.bin"
            if not path.exists():
                path.write_bytes(rng.randbytes(rng.randint(args.min_size, args.max_size)))
            files.append(path)
        settings = ClientSettings(
            host=host,
            port=port,
            name=name,
            config_dir=directory,
            packet_size=args.packet_size,
            connect_timeout=args.connect_timeout,
            response_timeout=args.timeout,
            retries=args.retries,
            backoff=args.backoff,
            backoff_cap=args.backoff_cap,
        )
        clients.append((settings, files))
    return clients


async def run_one(settings: ClientSettings, files: list[Path], key: RSA.RsaKey) -> ClientResult:
    result = ClientResult(settings.name, files=[path.name for path in files])
    reporter = RecordingReporter()
    started = time.monotonic()
    try:
        await run(settings, files, reporter, new_key=lambda: key)
    except ClientError as exc:
        result.error, result.exit_code = f"{type(exc).__name__}: {exc}", int(exc.exit_code)
    except Exception as exc:  # a bug in the client: report it, keep the others going
        result.error, result.exit_code = f"internal: {type(exc).__name__}: {exc}", 1
    result.seconds = time.monotonic() - started
    result.verified = reporter.verified
    result.connection_retries = reporter.connection_retries
    result.server_errors = reporter.server_errors
    identity = read_identity(settings.config_dir / config.ME_INFO)
    result.client_id = identity.client_id.hex() if identity else None
    return result


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {
        "min": round(ordered[0], 4),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 4),
        "mean": round(statistics.fmean(ordered), 4),
    }


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    clients = prepare(args)
    key = crypto.generate_rsa_key()
    if args.register_first:
        started = time.monotonic()
        registered = await asyncio.gather(*(run_one(s, [], key) for s, _ in clients))
        failed = [r for r in registered if r.error]
        emit(
            {
                "event": "registered",
                "clients": len(clients),
                "failures": len(failed),
                "errors": [f"{r.name}: {r.error}" for r in failed[:10]],
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    started = time.monotonic()
    results = await asyncio.gather(*(run_one(s, files, key) for s, files in clients))
    elapsed = time.monotonic() - started
    failures = [r for r in results if r.error]
    return {
        "event": "report",
        "clients": len(results),
        "successes": len(results) - len(failures),
        "failures": len(failures),
        "errors": [f"{r.name}: {r.error}" for r in failures[:20]],
        "files_verified": sum(len(r.verified) for r in results),
        "connection_retries": sum(r.connection_retries for r in results),
        "server_errors": sum(r.server_errors for r in results),
        "elapsed_seconds": round(elapsed, 3),
        "latency_seconds": percentiles([r.seconds for r in results if not r.error]),
        "per_client": [asdict(r) for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    raise_file_limit(2 * args.clients + 256)
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:
        args.loop = "asyncio"
    if args.loop == "uvloop":
        report = uvloop.run(main_async(args))
    else:
        report = asyncio.run(main_async(args))
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1))
    emit(report)
    return 0 if report["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
