"""The server SIGKILLed at random moments during many transfers, and restarted each time.

After every kill (the crash state, before the restart) and at the end:

* every file under a final name is byte-identical to its client's source: a commit is
  all or nothing;
* no ``.part`` file is ever under ``files/``;

and at the end:

* every file a client saw verified (1604) is on the server: nothing acknowledged is
  lost;
* ``tmp/`` is empty and the registry's ``files`` rows are exactly the files on disk,
  with their sizes and checksums.

The kill moments come from a seeded generator: ``EFT_KILL_SEED=N`` replays a schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_lab.processes import clean_env
from eft_protocol.cksum import Cksum
from tests.faults.test_client_killed import file_rows, files_on_disk
from tests.hostile.helpers import wait_until
from tests.support.processes import ServerProcess

CLIENTS = 8
FILES_PER_CLIENT = 8
KILLS = 5


def _sources(workdir: Path) -> dict[tuple[str, str], Path]:
    """(client id hex, file name) -> the client's source file."""
    found = {}
    for client_dir in workdir.iterdir():
        me_info = client_dir / "me.info"
        client_id = me_info.read_text().splitlines()[1].strip()
        for path in (client_dir / "files").iterdir():
            found[(client_id, path.name)] = path
    return found


def _verified(server: ServerProcess) -> int:
    """Files verified by the server process running now (its own log)."""
    return sum(
        1 for r in server.logs() if r.get("event") == "transfer" and r.get("outcome") == "verified"
    )


def _check_final_files(data_dir: Path, sources: dict[tuple[str, str], Path]) -> int:
    files_dir = data_dir / "files"
    assert not list(files_dir.rglob("*.part")), "a temporary file under files/"
    count = 0
    for path in files_dir.glob("*/*"):
        source = sources[(path.parent.name, path.name)]
        assert path.read_bytes() == source.read_bytes(), f"{path} differs from its source"
        count += 1
    return count


def _cksum(path: Path) -> tuple[int, int]:
    checksum = Cksum()
    checksum.update(path.read_bytes())
    return checksum.length, checksum.value


@pytest.mark.slow
def test_the_server_killed_at_random_moments_loses_nothing(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    seed = int(os.environ.get("EFT_KILL_SEED", "20261127"))
    rng = random.Random(seed)
    server = server_factory()
    workdir = tmp_path / "clients"
    generator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eft_lab.load_generator",
            "--server",
            server.address,
            "--workdir",
            str(workdir),
            "--clients",
            str(CLIENTS),
            "--files-per-client",
            str(FILES_PER_CLIENT),
            "--min-size",
            "50000",
            "--max-size",
            "1500000",
            "--packet-size",
            "16384",
            "--seed",
            str(seed),
            "--register-first",
            "--retries",
            "60",
            "--backoff",
            "0.05",
            "--backoff-cap",
            "0.4",
            "--timeout",
            "20",
            # uvloop raises RuntimeError, not ConnectionLost, when a write meets a reset
            # connection (test_client_link.py): the client would give up, not reconnect.
            "--loop",
            "asyncio",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert generator.stdout is not None
        registered = json.loads(generator.stdout.readline())
        assert registered["event"] == "registered" and registered["failures"] == 0, registered
        sources = _sources(workdir)
        kills = 0
        for _ in range(KILLS):
            # A random moment in the clients' work, counted in their progress, not in
            # seconds: after 4 to 10 more verified files on this server (8 clients work
            # at once, so others are mid-transfer). 5 kills x 10 < 64 files: every kill
            # happens, however fast the machine is.
            wanted = rng.randint(4, 10)
            wait_until(
                lambda: generator.poll() is not None or _verified(server) >= wanted,  # noqa: B023
                f"{wanted} verified files",
                timeout=120,
            )
            if generator.poll() is not None:
                break
            server.stop(signal.SIGKILL)
            kills += 1
            _check_final_files(server.data_dir, sources)  # the crash state
            server.start()  # on the port it holds
        stdout, stderr = generator.communicate(timeout=240)
    finally:
        if generator.poll() is None:
            generator.kill()
            generator.wait()
    report: dict[str, Any] = json.loads(stdout.decode().splitlines()[-1])
    assert kills >= 3, f"the transfers ended before the kills (seed {seed})"
    assert report["failures"] == 0, (seed, report["errors"], stderr.decode()[-2000:])
    assert report["connection_retries"] >= kills

    # Nothing acknowledged is lost; nothing under a final name is wrong.
    for client in report["per_client"]:
        assert client["verified"] == client["files"]
        for name in client["verified"]:
            stored = server.data_dir / "files" / client["client_id"] / name
            assert stored.exists(), f"{name} was acknowledged, then lost (seed {seed})"
    assert _check_final_files(server.data_dir, sources) == CLIENTS * FILES_PER_CLIENT

    # A clean stop, then the registry against the disk.
    server.stop()
    assert list((server.data_dir / "tmp").iterdir()) == []
    assert file_rows(server.data_dir) == files_on_disk(server.data_dir)
    uri = f"file:{server.data_dir / 'eft.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT ID, FileName, PathName, Size, Cksum, Verified FROM files")
        for client_id, name, path, size, cksum, verified in rows:
            disk = server.data_dir / "files" / bytes(client_id).hex() / name
            assert Path(path) == disk
            assert (size, cksum) == _cksum(disk), name
            assert verified == 1
