"""C++ clients in the native lab: a thread per client running the binary in a loop.

The C++ client exports no metrics; the lab counts its runs from exit codes and records
its verified files in the same ``verified.jsonl`` manifest the Python clients write.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_INTEGRITY_FAILED = 5


def find_cpp_client() -> Path | None:
    for candidate in (REPO_ROOT / "client" / "cpp" / "build" / "eft-client-cpp",):
        if candidate.exists():
            return candidate
    found = shutil.which("eft-client-cpp")
    return Path(found) if found else None


class CppClientLoop:
    def __init__(self, binary: Path, workdir: Path, name: str, seed: int) -> None:
        self.binary, self.workdir, self.name = binary, workdir, name
        self.rng = random.Random(seed)
        self.runs = self.verified = self.gave_up = self.failed = 0
        self.bytes_verified = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, server: str, rate: float, max_size: int) -> CppClientLoop:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._loop, args=(server, rate, max_size), daemon=True
        )
        self._thread.start()
        return self

    def _loop(self, server: str, rate: float, max_size: int) -> None:
        sequence = 0
        log = open(self.workdir / "client.log", "ab")  # noqa: SIM115 - closed below
        try:
            while not self._stop.is_set():
                sequence += 1
                name = f"cpp{sequence:06d}.bin"
                data = self.rng.randbytes(self.rng.randint(0, max_size))
                path = self.workdir / name
                path.write_bytes(data)
                command = [
                    str(self.binary),
                    "--server",
                    server,
                    "--name",
                    self.name,
                    "--dir",
                    str(self.workdir),
                    name,
                ]
                code = subprocess.run(
                    command,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=log,
                    check=False,
                    start_new_session=True,  # the lab stops it, not the terminal's Ctrl-C
                ).returncode
                path.unlink(missing_ok=True)
                self.runs += 1
                if code == 0:
                    self.verified += 1
                    self.bytes_verified += len(data)
                    self._record(name, data)
                elif code == EXIT_INTEGRITY_FAILED:
                    self.gave_up += 1
                else:
                    self.failed += 1
                if rate > 0:
                    self._stop.wait(self.rng.expovariate(rate))
        finally:
            log.close()

    def _record(self, name: str, data: bytes) -> None:
        client_id = (self.workdir / "me.info").read_text().splitlines()[1].strip()
        record = {
            "client_id": client_id,
            "file": name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with open(self.workdir / "verified.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=120)
