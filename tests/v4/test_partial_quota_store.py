"""The quota on unfinished uploads, in process: oldest idle first, open ones never."""

from __future__ import annotations

import os
from pathlib import Path

from eft_protocol.v4.records import CHUNK
from eft_server.partial_uploads import PartialQuota, PartialStore, PartialUpload

ALICE, BOB = b"\x0a" * 16, b"\x0b" * 16


def kept_after_a_break(store: PartialStore, client: bytes, number: int, chunks: int = 1) -> None:
    upload = store.open(client, bytes([number]) * 16, f"f{number}", 4 * CHUNK)
    for index in range(1, chunks + 1):
        upload.write(index, bytes(CHUNK))
    upload.suspend()


def test_server_wide_bytes_drop_the_oldest_idle_uploads_of_any_client(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    quota = PartialQuota(bytes=2 * CHUNK)
    store = PartialStore(tmp_path, quota, on_drop=lambda reason, size: drops.append((reason, size)))
    kept_after_a_break(store, ALICE, 1)
    kept_after_a_break(store, BOB, 2)
    assert drops == []
    kept_after_a_break(store, BOB, 3)
    assert drops == [("server_bytes", CHUNK)]
    assert not list((store.partial_dir / ALICE.hex()).glob("*"))  # the oldest: alice's
    assert store.usage() == (2, 2 * CHUNK)


def test_an_upload_a_connection_holds_is_never_dropped(tmp_path: Path) -> None:
    store = PartialStore(tmp_path, PartialQuota(uploads_per_client=1))
    held: PartialUpload = store.open(ALICE, b"\x01" * 16, "held", 4 * CHUNK)
    held.write(1, bytes(CHUNK))
    kept_after_a_break(store, ALICE, 2)  # over the limit, but held is open: both stay
    assert store.usage()[0] == 2
    held.write(2, bytes(CHUNK))
    held.suspend()  # now the other one, idle and older, goes
    assert [p.name for p in (store.partial_dir / ALICE.hex()).glob("*.part")] == [
        ("01" * 16) + ".part"
    ]
    assert store.usage() == (1, 2 * CHUNK)


def test_limits_lowered_since_the_last_run_are_met_at_start_up(tmp_path: Path) -> None:
    before = PartialStore(tmp_path)
    for number in range(1, 5):
        kept_after_a_break(before, ALICE, number)
        sidecar = before.partial_dir / ALICE.hex() / f"{bytes([number]).hex() * 16}.json"
        os.utime(sidecar, (1000.0 + number, 1000.0 + number))  # file times can tie
    after = PartialStore(tmp_path, PartialQuota(uploads_per_client=2))
    after.remove_leftovers()
    assert after.usage() == (2, 2 * CHUNK)
    names = sorted(p.name[:2] for p in (after.partial_dir / ALICE.hex()).glob("*.part"))
    assert names == ["03", "04"]  # the two most recent


def test_an_upload_over_a_limit_on_its_own_stays_resumable_until_the_next(
    tmp_path: Path,
) -> None:
    store = PartialStore(tmp_path, PartialQuota(bytes_per_client=CHUNK))
    kept_after_a_break(store, ALICE, 1, chunks=2)  # twice the limit, and yet kept
    assert store.usage() == (1, 2 * CHUNK)
    resumed = store.open(ALICE, bytes([1]) * 16, "f1", 4 * CHUNK)
    assert resumed.durable_chunks == 2
    resumed.suspend()
    kept_after_a_break(store, ALICE, 2)  # the next upload: now the first one goes
    assert store.usage() == (1, CHUNK)
