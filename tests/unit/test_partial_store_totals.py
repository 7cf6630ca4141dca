"""The partial store's running totals (server/eft_server/partial_uploads.py, issue 22):
the kept uploads grouped by client with their counts and bytes, and the bytes the open
uploads have yet to write, kept as they change instead of summed at each open.

A stateful property test drives a real ``PartialStore`` in a temporary folder through
random opens (resumable or streamed), writes, suspends, commits, discards, touches,
quota sweeps, expiries, a re-read of the disk and a restart. After every step the
totals equal a count from scratch, and every quota sweep (those inside ``open``,
``suspend`` and ``remove_leftovers`` too) drops exactly what the algorithm the totals
replaced (a sort of every kept upload at each check, kept below as ``old_drops``)
drops; ``room`` leaves exactly what the old sum over every holder left."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from eft_protocol.v4.records import CHUNK
from eft_server.partial_uploads import (
    PartialQuota,
    PartialStore,
    PartialUpload,
    UploadBusy,
    commit_group,
)
from tests.support.examples import examples

CLIENTS = [bytes([n]) * 16 for n in (0x0A, 0x0B, 0x0C)]
FREE = 1 << 40  # what the stub of statvfs says is free

#: A snapshot of the kept index: part -> (client, size, used), in the index's order.
Snapshot = dict[Path, tuple[str, int, float]]


def old_drops(
    kept: Snapshot,
    held: set[Path],
    quota: PartialQuota,
    client: str | None,
    keep: Path | None,
) -> dict[Path, str]:
    """What the quota sweep dropped before the totals (each dropped part -> reason):
    every client's uploads found by a scan of all, sorted by their last use."""
    kept = dict(kept)
    dropped: dict[Path, str] = {}
    clients = {client} if client is not None else {c for c, _, _ in kept.values()}
    for name in clients:
        mine = sorted(((p, e) for p, e in kept.items() if e[0] == name), key=lambda i: i[1][2])
        count, size = len(mine), sum(e[1] for _, e in mine)
        for part, entry in mine:
            if count <= quota.uploads_per_client and size <= quota.bytes_per_client:
                break
            if part in held or part == keep:
                continue
            over = count > quota.uploads_per_client
            dropped[part] = "client_uploads" if over else "client_bytes"
            count, size = count - 1, size - entry[1]
            del kept[part]
    count, size = len(kept), sum(e[1] for e in kept.values())
    for part, entry in sorted(kept.items(), key=lambda i: i[1][2]):
        if count <= quota.uploads and size <= quota.bytes:
            break
        if part in held or part == keep:
            continue
        dropped[part] = "server_uploads" if count > quota.uploads else "server_bytes"
        count, size = count - 1, size - entry[1]
    return dropped


class CheckedStore(PartialStore):
    """A real store whose every quota sweep is compared with ``old_drops``."""

    def __init__(self, data_dir: Path, quota: PartialQuota) -> None:
        self.drops: list[tuple[str, int]] = []
        super().__init__(
            data_dir, quota, on_drop=lambda reason, size: self.drops.append((reason, size))
        )
        self.sweeps = 0

    def snapshot(self) -> Snapshot:
        with self._lock:
            entries = self._index().entries
            return {part: (e.client, e.size, e.used) for part, e in entries.items()}

    def _enforce(self, client: str | None, keep: Path | None = None) -> int:
        before, held = self.snapshot(), set(self._open)
        expected = old_drops(before, held, self.quota, client, keep)
        told = len(self.drops)
        count = super()._enforce(client, keep)
        after = self.snapshot()
        assert {part for part in before if part not in after} == set(expected)
        assert sorted(self.drops[told:]) == sorted((expected[p], before[p][1]) for p in expected)
        assert count == len(expected)
        for part in expected:
            assert not part.exists() and not part.with_suffix(".json").exists()
        self.sweeps += 1
        return count


@dataclass
class Open:
    upload: PartialUpload
    client: bytes
    chunks: int
    stream: bool
    written: int


@contextmanager
def statvfs_says_free() -> Iterator[None]:
    """``room``'s free space fixed (other processes share this file system), so the
    rest of it, what the holders have yet to write, is compared exactly."""
    stats = SimpleNamespace(f_bavail=FREE // 4096, f_frsize=4096)
    with mock.patch("os.statvfs", return_value=stats):
        yield


class PartialStoreTotals(RuleBasedStateMachine):
    opened = Bundle("opened")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="eft-pstore-"))
        self.open: dict[Path, Open] = {}
        self.names = 0
        self.store: CheckedStore

    @initialize(
        quota=st.builds(
            PartialQuota,
            uploads_per_client=st.integers(1, 2),
            bytes_per_client=st.integers(1, 3).map(lambda n: n * CHUNK),
            uploads=st.integers(1, 4),
            bytes=st.integers(1, 5).map(lambda n: n * CHUNK),
        )
    )
    def start(self, quota: PartialQuota) -> None:
        self.quota = quota
        self.store = CheckedStore(self.folder, quota)

    @rule(
        target=opened,
        client=st.sampled_from(CLIENTS),
        number=st.integers(1, 4),
        chunks=st.integers(1, 3),
        stream=st.booleans(),
    )
    def open_upload(self, client: bytes, number: int, chunks: int, stream: bool) -> Path | None:
        upload_id = bytes([number]) * 16
        part = self.store.partial_dir / client.hex() / f"{upload_id.hex()}.part"
        size = chunks * CHUNK - 7  # the final chunk short
        try:
            upload = self.store.open(client, upload_id, f"f{number}", size, stream=stream)
        except UploadBusy:
            assert part in self.open
            return None
        assert part not in self.open
        self.open[part] = Open(upload, client, chunks, stream, upload.durable_chunks)
        return part

    def _held(self, part: Path | None) -> Open | None:
        return self.open.get(part) if part is not None else None

    @rule(part=opened)
    def write(self, part: Path | None) -> None:
        held = self._held(part)
        if held is None or held.written == held.chunks:
            return
        held.written += 1
        length = CHUNK if held.written < held.chunks else CHUNK - 7
        held.upload.write(held.written, bytes(length))

    @rule(part=consumes(opened))
    def suspend(self, part: Path | None) -> None:
        held = self._held(part)
        if held is not None:
            held.upload.suspend()
            del self.open[held.upload.part]

    @rule(part=consumes(opened))
    def discard(self, part: Path | None) -> None:
        held = self._held(part)
        if held is not None:
            held.upload.discard()
            del self.open[held.upload.part]

    @rule(part=consumes(opened))
    def commit(self, part: Path | None) -> None:
        held = self._held(part)
        if held is None:
            return
        while held.written < held.chunks:
            self.write(part)
        self.names += 1
        root = self.store.client_root(held.client)
        if held.stream:
            commit_group(root, [held.upload])
        else:
            held.upload.finish()
            held.upload.commit(root, f"n{self.names}")
        del self.open[held.upload.part]

    @rule(part=opened)
    def touch(self, part: Path | None) -> None:
        held = self._held(part)
        if held is not None:
            self.store.touch(held.upload.part, held.upload.received)

    @rule(client=st.none() | st.sampled_from(CLIENTS).map(bytes.hex))
    def enforce(self, client: str | None) -> None:
        self.store.enforce_quota(client)

    @rule(draw=st.integers(0, 3))
    def expire_all(self, draw: int) -> None:
        if draw == 0:  # a rare event: left as likely as the others, few would pile up
            self.store.remove_expired(-1.0)  # every idle one: older than "now + 1 s"

    @rule()
    def read_the_disk_again(self) -> None:
        with self.store._lock:
            self.store._kept = None

    @rule()
    def restart(self) -> None:
        """Every connection broken, a new server on the same folder."""
        for held in list(self.open.values()):
            held.upload.suspend()
        self.open.clear()
        self.store = CheckedStore(self.folder, self.quota)
        self.store.remove_leftovers()

    @invariant()
    def kept_totals_are_a_count_from_scratch(self) -> None:
        store = self.store
        with store._lock:
            kept = store._index()
            entries = list(kept.entries.items())
            assert kept.bytes == sum(e.size for _, e in entries)
            clients = {e.client for _, e in entries}
            assert set(kept.by_client) == clients  # no group left empty
            for client in clients:
                mine = [(p, e) for p, e in entries if e.client == client]
                assert list(kept.by_client[client].items()) == mine  # the same order
                assert kept.client_count(client) == len(mine)
                assert kept.client_bytes[client] == sum(e.size for _, e in mine)
            assert set(kept.client_bytes) == clients
        assert store.usage() == (len(entries), sum(e.size for _, e in entries))

    @invariant()
    def room_is_what_the_sum_over_the_holders_left(self) -> None:
        store = self.store
        holders = list(store._holders.values())
        assert {u.part for u in holders} == set(self.open)
        assert store._promised == sum(u.left for u in holders)
        with statvfs_says_free():
            for asking in [None, *holders]:
                promised = sum(u.left for u in holders if u is not asking)
                assert store.room(5, asking=asking) == FREE - 5 - promised

    def teardown(self) -> None:
        for held in self.open.values():
            held.upload.discard()
        shutil.rmtree(self.folder, ignore_errors=True)


PartialStoreTotals.TestCase.settings = settings(
    max_examples=examples(60),
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_partial_store_totals = PartialStoreTotals.TestCase


def test_a_client_within_its_limits_is_checked_without_its_neighbours(tmp_path: Path) -> None:
    """The point of the grouping: one client's check reads its own uploads only (a
    thousand other clients' kept uploads are not sorted, nor even visited)."""
    store = PartialStore(tmp_path)
    for number in range(1, 4):
        store.open(CLIENTS[0], bytes([number]) * 16, "f", 10).suspend()
    with store._lock:
        kept = store._index()
        assert kept.client_count(CLIENTS[0].hex()) == 3 and kept.client_count("ab" * 16) == 0
        assert kept.client_bytes[CLIENTS[0].hex()] == 0 and len(kept) == 3


def test_room_leaves_out_only_the_asking_upload(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    first = store.open(CLIENTS[0], b"\x01" * 16, "a", 3 * CHUNK)
    second = store.open(CLIENTS[1], b"\x02" * 16, "b", 2 * CHUNK)
    first.write(1, bytes(CHUNK))
    with statvfs_says_free():
        assert store.room(0, asking=first) == FREE - 2 * CHUNK
        assert store.room(0, asking=second) == FREE - 2 * CHUNK
        assert store.room(0) == FREE - 4 * CHUNK
        first.suspend()  # no longer held: promises nothing
        assert store.room(0, asking=first) == FREE - 2 * CHUNK
        second.discard()
        assert store.room(0) == FREE
