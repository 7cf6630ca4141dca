"""Many clients at once, in one process: ``python -m bench.load --server H:P --clients N``.

Every client is a full session (register, key exchange, one file, verdict) through the
CLI client's own code: ``eft_client.transfer.run`` for version 3, all sharing one
pre-made RSA key (generating RSA-1024 costs ~100 ms each), or ``run_v4`` for version 4
(``--protocol 4``: each client makes its own X25519 key and Noise handshake). Prints one
JSON object: wall time, per-session latencies, failures, and this process's own CPU
(user + system): while the sessions ran, and in all (start-up, the payload, the RSA key).
It shares the machine's cores with the server, so its CPU is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_client.transfer import run
from eft_client.transfer_v4 import run_v4
from eft_protocol import crypto

from .common import raise_nofile


async def _one(
    settings: ClientSettings, path: Path, key: Any, start: asyncio.Event, protocol: int
) -> float:
    await start.wait()
    began = time.perf_counter()
    if protocol == 4:
        await run_v4(settings, [path], Reporter())
    else:
        await run(settings, [path], Reporter(), new_key=lambda: key)
    return time.perf_counter() - began


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.server.rsplit(":", 1)
    workdir = Path(args.workdir)
    path = workdir / "payload.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(args.size))
    key = crypto.generate_rsa_key() if args.protocol == 3 else None
    start = asyncio.Event()
    tasks = []
    for index in range(args.clients):
        settings = ClientSettings(
            host=host,
            port=int(port),
            name=f"{args.prefix}-{index}",
            config_dir=workdir / f"client-{index}",
            connect_timeout=60.0,
            response_timeout=float(os.environ.get("BENCH_RESPONSE_TIMEOUT", "120")),
            retries=0,  # a failure is counted, not hidden by a retry
        )
        settings.config_dir.mkdir(parents=True, exist_ok=True)
        tasks.append(asyncio.create_task(_one(settings, path, key, start, args.protocol)))
    cpu_before = _own_cpu()
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - began
    cpu_sessions = _own_cpu() - cpu_before
    latencies = [r for r in results if isinstance(r, float)]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {
        "protocol": args.protocol,
        "clients": args.clients,
        "size": args.size,
        "wall_seconds": wall,
        "latencies": latencies,
        "failures": len(errors),
        "errors": sorted(set(errors))[:10],
        "cpu_seconds_sessions": cpu_sessions,
    }


def _own_cpu() -> float:
    """This process's user + system CPU seconds so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--prefix", default="load")
    parser.add_argument("--protocol", type=int, choices=(3, 4), default=3)
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop  # noqa: PLC0415 - as the CLI client runs

        result = uvloop.run(_main(args))
    except ImportError:
        result = asyncio.run(_main(args))
    result["cpu_seconds_total"] = _own_cpu()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
