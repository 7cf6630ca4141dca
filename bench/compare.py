"""Before and after: the same eft upload with the packages as they are at a git
revision and as they are in the work tree, interleaved, fresh server each run.

``python -m bench.compare [RUNS] [SIZE_MIB] [PROTOCOL]``: the "before" tree is the
packages at ``BENCH_BEFORE_REV`` (default ``main``), run through PYTHONPATH; PROTOCOL is
3 (default) or 4. Prints MB/s, server and client CPU s/GiB and the server's peak RSS."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import ROOT, GiB, MiB, Settings, bench_env, median, write_random_file
from .eft import EftServer, client_command
from .runs import LABELS

PACKAGES = ("protocol", "server", "client", "lab")
#: The revision to compare the work tree with (BENCH_BEFORE_REV): by default the main
#: branch, so a branch's change is measured against what it changes.
BEFORE = os.environ.get("BENCH_BEFORE_REV", "main")


def before_tree(target: Path, revision: str = BEFORE) -> Path:
    """The packages exactly as they are at ``revision`` (from git, nothing patched: a
    copy of production code kept here as text would break whenever either changed)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(runs: int, size: int, backends: list[str], protocol: int = 3) -> dict[str, Any]:
    settings = Settings.from_env()
    work = settings.workdir / "compare"
    source = write_random_file(work / "source.bin", size)
    old = before_tree(work / "before")
    paths = ":".join(str(old / p) for p in PACKAGES)
    variants: dict[str, dict[str, str]] = {"before": bench_env(PYTHONPATH=paths)}
    for backend in backends:
        variants[f"after ({LABELS.get(backend, backend)})"] = bench_env(EFT_AES_BACKEND=backend)
    figures: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in variants}
    try:
        for _ in range(runs):
            for name, env in variants.items():
                server = EftServer(work / f"server-{list(variants).index(name)}", env=env).start()
                try:
                    server.mark()
                    cpu = _client_cpu()
                    started = time.perf_counter()
                    subprocess.run(
                        client_command(
                            server.address,
                            "compare",
                            work / "client" / str(list(variants).index(name)),
                            [source],
                            protocol,
                        ),
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    seconds = time.perf_counter() - started
                    client_cpu = _client_cpu() - cpu
                    used = server.usage()
                finally:
                    server.stop()
                    server.drop_files()
                figures[name].append(
                    (size / seconds / 1e6, used.cpu_seconds, client_cpu, used.peak_rss)
                )
    finally:
        shutil.rmtree(settings.workdir, ignore_errors=True)  # this process's, work too
    scale = GiB / size
    return {
        name: {
            "mb_per_s": median([r[0] for r in rows]),
            "server_cpu_s_per_gib": median([r[1] * scale for r in rows]),
            "client_cpu_s_per_gib": median([r[2] * scale for r in rows]),
            "server_peak_rss_mib": median([r[3] / MiB for r in rows]),
            "runs": len(rows),
        }
        for name, rows in figures.items()
    }


def main() -> None:
    from eft_protocol import crypto  # noqa: PLC0415

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    size = int(sys.argv[2]) * MiB if len(sys.argv) > 2 else GiB
    protocol = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if protocol not in (3, 4):
        sys.exit(f"protocol {protocol}: choose 3 or 4")
    backends = ["pycryptodome"] + (["auto"] if crypto.openssl_available() else [])
    results = compare(runs, size, backends, protocol)
    print(f"eft v{protocol}, {size / MiB:.0f} MiB, {runs} run(s) of each variant")
    print("| variant | MB/s | server CPU s/GiB | client CPU s/GiB | server peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, row in results.items():
        print(
            f"| {name} | {row['mb_per_s']:.0f} | {row['server_cpu_s_per_gib']:.2f} "
            f"| {row['client_cpu_s_per_gib']:.2f} | {row['server_peak_rss_mib']:.1f} |"
        )
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()
