"""``eft-lab``: the system as processes on this machine, with a summary at the end.

It starts a server on a free loopback port, then several clients at once; each client
registers, exchanges keys and sends a set of generated files (empty, small, and one
cut into more than a thousand packets). Then it checks every stored file against its
source, prints a table, stops the server and says where the logs are. It exits
non-zero if any file a client counted as verified is missing or differs on the server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .processes import ServerProcess, clean_env

#: (name, size in bytes, packet size): each client sends all of them.
FILE_SET = (
    ("empty.bin", 0, 65536),
    ("small.txt", 1_500, 65536),
    ("many-packets.bin", 256 * 1024, 256),  # 1025 packets
    ("medium.bin", 3 * 1024 * 1024, 65536),
)


@dataclass
class ClientResult:
    name: str
    workdir: Path
    returncode: int = -1
    events: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    stderr: str = ""

    @property
    def verified(self) -> list[str]:
        return [str(e["file"]) for e in self.events if e["event"] == "file_verified"]

    @property
    def retries(self) -> int:
        return sum(1 for e in self.events if e["event"] in ("crc_mismatch", "server_error"))

    @property
    def client_id(self) -> str | None:
        me_info = self.workdir / "me.info"
        return me_info.read_text().splitlines()[1] if me_info.exists() else None


def _make_files(directory: Path, seed: int) -> list[tuple[Path, int]]:
    import random  # noqa: PLC0415 - only the lab generates data

    rng = random.Random(seed)
    files = []
    for name, size, packet_size in FILE_SET:
        path = directory / name
        path.write_bytes(rng.randbytes(size))
        files.append((path, packet_size))
    return files


def _run_client(result: ClientResult, address: str, files: list[tuple[Path, int]]) -> None:
    """Send the files one session each, as a user running the client repeatedly would."""
    started = time.monotonic()
    for path, packet_size in files:
        command = [
            sys.executable,
            "-m",
            "eft_client",
            "--json",
            "--server",
            address,
            "--name",
            result.name,
            "--config-dir",
            str(result.workdir),
            "--packet-size",
            str(packet_size),
            str(path),
        ]
        done = subprocess.run(
            command, capture_output=True, env=clean_env(), timeout=600, check=False
        )
        result.events += [
            json.loads(x) for x in done.stdout.decode().splitlines() if x.startswith("{")
        ]
        result.stderr += done.stderr.decode(errors="replace")
        result.returncode = done.returncode
        if done.returncode != 0:
            break
    result.seconds = time.monotonic() - started


def run_lab(clients: int, out: Path, console: Console) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "server").mkdir(exist_ok=True)
    server = ServerProcess(out / "server" / "data", out / "server.log")
    console.print(f"[bold]eft lab[/] in {out}")
    server.start()
    console.print(f"server listening on {server.address}")
    plans: list[tuple[ClientResult, list[tuple[Path, int]]]] = []
    try:
        for index in range(clients):
            name = f"lab-client-{index + 1}"
            workdir = out / "clients" / name
            workdir.mkdir(parents=True, exist_ok=True)
            plans.append((ClientResult(name, workdir), _make_files(workdir, seed=index)))
        console.print(f"{clients} clients sending {len(FILE_SET)} files each, all at once ...")
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for future in [pool.submit(_run_client, r, server.address, f) for r, f in plans]:
                future.result()
    finally:
        server.stop()
    return _report(server, plans, out, console)


def _report(
    server: ServerProcess,
    results: list[tuple[ClientResult, list[tuple[Path, int]]]],
    out: Path,
    console: Console,
) -> int:
    table = Table(title="Transfers")
    for column in ("client", "client id", "verified", "bytes", "retries", "seconds", "result"):
        table.add_column(column, justify="right" if column in ("bytes", "seconds") else "left")
    problems = []
    total_bytes = total_files = 0
    for result, files in results:
        sent_bytes = 0
        for path, _packet_size in files:
            if path.name not in result.verified:
                continue
            stored = server.stored(result.client_id or "?", path.name)
            if not stored.exists() or stored.read_bytes() != path.read_bytes():
                problems.append(f"{result.name}: {path.name} verified but differs on the server")
            sent_bytes += path.stat().st_size
        ok = result.returncode == 0 and len(result.verified) == len(files)
        if not ok:
            problems.append(
                f"{result.name}: exit code {result.returncode}: {result.stderr.strip()}"
            )
        total_bytes += sent_bytes
        total_files += len(result.verified)
        table.add_row(
            result.name,
            (result.client_id or "-")[:8],
            f"{len(result.verified)}/{len(files)}",
            f"{sent_bytes:,}",
            str(result.retries),
            f"{result.seconds:.2f}",
            "[green]ok[/]" if ok else "[red]FAILED[/]",
        )
    console.print(table)
    console.print(
        f"{total_files} files, {total_bytes:,} bytes verified byte for byte on the server"
    )
    console.print(f"server log: {server.current_log}")
    console.print(f"stored files: {server.data_dir / 'files'}")
    console.print(f"client directories: {out / 'clients'}")
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eft-lab", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    parser.add_argument(
        "--out", type=Path, help="where logs and files go (default lab-runs/<time>)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    out = args.out or Path("lab-runs") / time.strftime("%Y%m%d-%H%M%S")
    try:
        return run_lab(args.clients, out.resolve(), Console())
    except KeyboardInterrupt:
        print("eft-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
