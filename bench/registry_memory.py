"""Memory per stored record: the registry's engines filled straight, in process.

Each engine is measured in a fresh interpreter (``python -m bench.registry_memory``), so
nothing else the bench did is in its RSS: a warm-up fills the caches (the SQLite engine's
LRU cache and SQLite's page cache), then RSS is read before and after storing
``records`` more file records (one client per 100 files, both protocol versions; each
record stored also looks up an older one and its client, as lookups fill the cache). The
figure is RSS growth divided by the records stored in the measured stretch; flat
memory shows as a few bytes per file (allocator noise), a copy of every record as
hundreds.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4

RECORDS = 100_000
WARM_UP = 20_000
FILES_PER_CLIENT = 100
BATCH = 500  # records per flush, as a busy server's group commit gathers them


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _store(registry: Any, start: int, count: int) -> None:
    for number in range(start, start + count):
        block = number // FILES_PER_CLIENT
        owner = (2 * block + number % 2).to_bytes(16, "big")  # odd: version 3, even: 4
        name = f"file-{number:08d}.bin"
        if number % FILES_PER_CLIENT < 2:
            if number % 2:
                registry.save_client(ClientRecord(owner, f"client-{block}", time.time()))
            else:
                key = block.to_bytes(32, "big")
                registry.save_client_v4(
                    ClientRecordV4(owner, f"client-{block}", key, time.time(), time.time())
                )
        if number % 2:
            registry.save_file(
                FileRecord(owner, name, f"/srv/eft/files/{owner.hex()}/{name}", number, 1, True)
            )
        else:
            digest = number.to_bytes(32, "big")
            registry.save_file_v4(
                FileRecordV4(owner, name, f"/srv/eft/v4/files/{owner.hex()}/{name}", number, digest)
            )
        _look_up(registry, number - BATCH)  # an older, written record: fills the cache
        if number % BATCH == BATCH - 1:
            done = registry.flush()
            if done is not None:
                done.result(60)
    done = registry.flush()
    if done is not None:
        done.result(60)


def _look_up(registry: Any, number: int) -> None:
    if number < 0:
        return
    owner = (2 * (number // FILES_PER_CLIENT) + number % 2).to_bytes(16, "big")
    name = f"file-{number:08d}.bin"
    if number % 2:
        assert registry.client_by_id(owner) is not None
        assert registry.file(owner, name) is not None
    else:
        assert registry.client_v4_by_id(owner) is not None
        assert registry.file_v4(owner, name) is not None


def measure_here(engine: str, records: int, warm_up: int, directory: Path) -> dict[str, Any]:
    from eft_server.registry import open_registry  # noqa: PLC0415 - after the first RSS

    registry = open_registry(directory, ephemeral=engine == "memory")
    try:
        _store(registry, 0, warm_up)
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        _store(registry, warm_up, records)
        seconds = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
        cached = getattr(registry, "cached_entries", lambda: None)()
    finally:
        registry.close()
    return {
        "engine": engine,
        "records": records,
        "warm_up": warm_up,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_bytes_per_file": round((after - before) / records, 1),
        "records_per_s": round(records / seconds),
        "cache_entries": cached,
    }


def measure(records: int = RECORDS, warm_up: int = WARM_UP) -> dict[str, Any]:
    """Both engines, each in a fresh interpreter."""
    results: dict[str, Any] = {}
    for engine in ("sqlite", "memory"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.registry_memory", engine, str(records), str(warm_up)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        results[engine] = json.loads(done.stdout)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=("sqlite", "memory"))
    parser.add_argument("records", type=int, nargs="?", default=RECORDS)
    parser.add_argument("warm_up", type=int, nargs="?", default=WARM_UP)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eft-registry-bench-") as directory:
        print(json.dumps(measure_here(args.engine, args.records, args.warm_up, Path(directory))))


if __name__ == "__main__":
    main()
