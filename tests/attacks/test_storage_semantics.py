"""What the protocol leaves undefined about storage, as our server settles it (see
"What the protocol leaves undefined about storage" in docs/SECURITY.md): the same name
uploaded twice, and two uploads of one name at once. Not findings: the behaviour a
client can rely on with our server, pinned for both versions."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import stored
from tests.support.processes import (
    ClientDir,
    ServerProcess,
    finish,
    paused,
    write_random_file,
)


def test_the_same_name_uploaded_again_replaces_the_file_and_keeps_no_copy(
    version: int,
    target: Callable[..., ServerProcess],
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    alice = victims("alice", server.address)
    first, second = tmp_path / "first" / "doc.txt", tmp_path / "second" / "doc.txt"
    for path, text in ((first, b"version one\n"), (second, b"version two, longer\n")):
        path.parent.mkdir()
        path.write_bytes(text)
        assert alice.run([path]).returncode == 0
    kept = stored(server, version, alice.client_id_hex, "doc.txt")
    assert kept.read_bytes() == b"version two, longer\n"
    assert list(kept.parent.iterdir()) == [kept]  # no backup, no second name


def test_two_uploads_of_one_name_at_once_end_with_the_last_confirmed_whole(
    version: int,
    target: Callable[..., ServerProcess],
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    alice = victims("alice", server.address)
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"registered\n")
    assert alice.run([hello]).returncode == 0
    # The same identity in a second directory: two runs of one client at once.
    twin_dir = tmp_path / "alice-twin"
    shutil.copytree(alice.path, twin_dir, ignore=shutil.ignore_patterns("uploads.json"))
    twin = ClientDir(twin_dir, "alice", server.address, protocol=version)
    sources = []
    for seed, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        sources.append(write_random_file(tmp_path / folder / "big.bin", 48 << 20, seed=seed))
    temporary = server.data_dir / ("tmp" if version == 3 else "v4/partial")

    def in_flight() -> list[Path]:
        return [p for p in temporary.rglob("*.part") if p.stat().st_size > 0]

    slow = alice.start([sources[0]])
    deadline = time.monotonic() + 60
    while not in_flight():  # the event: alice's upload has reached the server's disk
        assert slow.poll() is None and time.monotonic() < deadline, "no upload in flight"
        time.sleep(0.01)
    with paused(slow):  # alice holds a half-written upload of big.bin meanwhile
        fast = twin.run([sources[1]])
        assert fast.returncode == 0, fast.stderr
        assert stored(server, version, alice.client_id_hex, "big.bin").read_bytes() == (
            sources[1].read_bytes()
        )
    late = finish(slow)
    assert late.returncode == 0, late.stderr
    # The later confirmation wins, whole; never a mix, nothing half-written left.
    kept = stored(server, version, alice.client_id_hex, "big.bin")
    assert kept.read_bytes() == sources[0].read_bytes()
    assert not [p for p in temporary.rglob("*") if p.is_file()]
