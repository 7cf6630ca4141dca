"""``python -m bench``: run the parts, write bench/results/, print the Markdown table.

Environment: ``BENCH_QUICK=1`` (256 MiB, 1 run, 10 and 100 clients, a smaller big file),
``BENCH_RUNS``, ``BENCH_SIZE_MIB``, ``BENCH_BIG_MIB``, ``BENCH_CLIENTS=10,100,1000``,
``BENCH_DIR`` (where the files go; default a RAM-backed directory), ``BENCH_PARTS``
(a comma-separated subset of micro,single,big,load,handshake,profile,registry,
many-files,replicas; replicas: 1, 2, 3 servers behind HAProxy on PostgreSQL and S3,
BENCH_REPLICAS=1,2,3 the counts;
BENCH_MANY_FILES files in its first set, BENCH_DISK_DIR a real disk's
directory to run it on as well;
BENCH_HANDSHAKES connections per handshake batch), ``BENCH_RESULTS`` (where
the report goes; default bench/results).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sys
import time

from eft_protocol import engines

from . import report, runs
from .common import RESULTS, GiB, Settings, compile_bytecode, raise_nofile, step

PARTS = (
    "micro",
    "single",
    "big",
    "load",
    "handshake",
    "profile",
    "registry",
    "many-files",
    "replicas",
)


def soak_results() -> dict[str, object] | None:
    """The last ``make soak``'s report (bench/results/soak.json), when there is one."""
    path = RESULTS / "soak.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def main() -> int:
    settings = Settings.from_env()
    parts = [p for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p]
    for part in parts:
        if part not in PARTS:
            print(f"unknown part {part!r}; choose from {', '.join(PARTS)}", file=sys.stderr)
            return 2
    raise_nofile()
    compile_bytecode()
    settings.workdir.mkdir(parents=True, exist_ok=True)
    # Made first: the profile step writes py-spy's output there before the report does.
    RESULTS.mkdir(parents=True, exist_ok=True)
    # The default engines (auto) and, beside them, PyCryptodome alone.
    backends = ["pycryptodome"] + (["auto"] if engines.openssl_available() else [])
    started = time.perf_counter()
    results: dict[str, object] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {platform.platform()}",
            "workdir": str(settings.workdir),
            "runs": settings.runs,
            "quick": settings.quick,
            "eft_backends": backends,
            "default_encrypt_backend": engines.ENCRYPT_BACKEND,
            "default_decrypt_backend": engines.DECRYPT_BACKEND,
            # Other work on the machine skews every figure: say how busy it was.
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python_writes_bytecode": not os.environ.get("PYTHONDONTWRITEBYTECODE"),
        }
    }
    try:
        if "micro" in parts:
            with step("in-process costs"):
                from . import micro  # noqa: PLC0415

                results["micro"] = micro.measure(repeats=settings.runs)
                results["micro"]["per_gib"]["write a new file in the work directory"] = (
                    micro.write_cost(settings.workdir, repeats=settings.runs)
                )
                results["micro"].update(micro.file_to_file(settings.workdir, repeats=settings.runs))
        if "single" in parts:
            with step(f"one {settings.file_size / GiB:.2f} GiB file, every tool"):
                results["single"] = runs.single_file(settings, backends)
        if "big" in parts:
            with step("the largest file"):
                results["big_file"] = runs.big_file(settings, backends[-1])
        if "load" in parts:
            with step("many clients"):
                results["concurrency"] = runs.concurrency(settings)
        if "handshake" in parts:
            with step("server CPU per version-4 handshake"):
                from . import handshakes  # noqa: PLC0415

                count = int(os.environ.get("BENCH_HANDSHAKES", handshakes.HANDSHAKES))
                results["handshake"] = handshakes.measure(settings.workdir, settings.runs, count)
        if "profile" in parts:
            with step("profiles"):
                results["profile"] = runs.profiles(settings, RESULTS)
        if "many-files" in parts:
            with step("many small files: eft v4 beside rsync, scp, sftp, tar over ssh"):
                from . import many_files  # noqa: PLC0415

                results["many_files"] = many_files.measure(settings)
        if "registry" in parts:
            with step("registry memory per stored file"):
                from . import registry_memory  # noqa: PLC0415

                results["registry_memory"] = registry_memory.measure()
        if "replicas" in parts:
            with step("server replicas behind HAProxy: PostgreSQL, S3, local disk"):
                from . import replicas  # noqa: PLC0415 - asyncpg, SeaweedFS: extras

                counts = os.environ.get("BENCH_REPLICAS", "1,2,3")
                results["replicas"] = replicas.measure(
                    settings, tuple(int(n) for n in counts.split(","))
                )
        soak = soak_results()  # from the last `make soak`, if any
        if soak is not None:
            results["soak"] = soak
    finally:
        shutil.rmtree(settings.workdir, ignore_errors=True)
    meta = results["meta"]
    assert isinstance(meta, dict)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(report.write(results, RESULTS))
    print(f"\nwritten to {RESULTS}/ (bench.json, bench.md, bench.png)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
