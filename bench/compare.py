"""Before and after: the same eft v3 upload with the hot-path files as they were before
the performance work and as they are in the work tree, interleaved, fresh server each run.

``python -m bench.compare [RUNS] [SIZE_MIB]``: the "before" tree is a copy of this work
tree with the performance work taken out (FROM_REVISION and UNDO below), run through
PYTHONPATH. Prints MB/s, server and client CPU s/GiB and
the server's peak RSS."""

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

#: Files whose history since BEFORE holds only the performance work: taken from BEFORE.
FROM_REVISION = (
    "protocol/eft_protocol/crypto.py",
    "protocol/eft_protocol/client_session.py",
    "server/eft_server/storage.py",
    "client/eft_client/transfer.py",
)
#: Files others change too: the performance edits are undone in the current text.
UNDO: dict[str, list[tuple[str, str]]] = {
    "server/eft_server/connection.py": [
        # The StreamReader path (no BufferedProtocol take-over)...
        (
            "incoming = _take_over(self.reader, self.writer, self.parser)",
            "incoming = None",
        ),
        # ...and no fast paths for content and packet starts in the request counter.
        (
            """        if type(event) is PacketContent:
            self._content_bytes.inc(len(event.data))
            return
        if type(event) is PacketStarted:
            self._packets.inc()
            if self._log_packets:
                self.log.debug(
                    "packet", number=event.packet.packet_number, total=event.packet.total_packets
                )
            return
        if isinstance(event, RequestReceived):
            code = int(event.request.code)
        elif isinstance(event, RequestRejected):
            code = event.header.code
        else:  # PacketFinished
            return
""",
            """        if isinstance(event, RequestReceived):
            code = int(event.request.code)
        elif isinstance(event, PacketStarted):
            code = int(RequestCode.SEND_FILE)
            self.log.debug(
                "packet", number=event.packet.packet_number, total=event.packet.total_packets
            )
        elif isinstance(event, RequestRejected):
            code = event.header.code
        else:
            if isinstance(event, PacketContent):
                self.context.metrics.received_ciphertext.inc(len(event.data))
            return
""",
        ),
    ],
    "protocol/eft_protocol/parser.py": [
        (
            """        size = min(self._remaining, len(buffer))
        # One copy straight into the event's bytes (slicing first would make two).
        if size == len(buffer):
            piece = bytes(buffer)
            buffer.clear()
        else:
            with memoryview(buffer) as view:
                piece = bytes(view[:size])
            del buffer[:size]
        self._remaining -= size
""",
            """        piece = bytes(self._take(min(self._remaining, len(buffer))))
        self._remaining -= len(piece)
""",
        ),
    ],
}
PACKAGES = ("protocol", "server", "client", "lab")
#: The last commit before the performance work (BENCH_BEFORE_REV).
BEFORE = os.environ.get("BENCH_BEFORE_REV", "ce2b8e6")


def before_tree(target: Path, revision: str = BEFORE) -> Path:
    """The work tree's packages with the performance work taken out."""
    shutil.rmtree(target, ignore_errors=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package)
    for name in FROM_REVISION:
        old = subprocess.run(
            ["git", "show", f"{revision}:{name}"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        (target / name).write_bytes(old)
    for name, edits in UNDO.items():
        text = (target / name).read_text()
        for new, old_text in edits:
            if new not in text:
                raise RuntimeError(f"{name} changed: cannot undo {new.strip()[:60]!r}")
            text = text.replace(new, old_text)
        (target / name).write_text(text)
    return target


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(runs: int, size: int, backends: list[str]) -> dict[str, Any]:
    settings = Settings.from_env()
    work = settings.workdir / "compare"
    source = write_random_file(work / "source.bin", size)
    old = before_tree(work / "before")
    paths = ":".join(str(old / p) for p in ("protocol", "server", "client", "lab"))
    # Before, the engines were PyCryptodome's CBC whatever EFT_AES_BACKEND said.
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
        shutil.rmtree(work, ignore_errors=True)
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
    backends = ["pycryptodome"] + (["auto"] if crypto.openssl_available() else [])
    results = compare(runs, size, backends)
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
