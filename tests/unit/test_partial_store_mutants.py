"""The partial store's quota sweep (issue 22's running totals) where the stateful test
of test_partial_store_totals.py and the older tests do not reach: the mutants of it
that survived them (docs/TESTING.md, "Seventh round"). In process, in a temporary
folder each."""

from __future__ import annotations

from pathlib import Path

from eft_protocol.v4.records import CHUNK
from eft_server.partial_uploads import PartialQuota, PartialStore

ALICE, BOB = b"\x0a" * 16, b"\x0b" * 16
UPLOAD = bytes(range(16))


def test_a_client_with_nothing_kept_is_within_any_limit(tmp_path: Path) -> None:
    """Its count and bytes are nought, even under limits of nought (which ``PartialQuota``
    takes, though the server's options start at 1): nothing to drop, nothing to sort."""
    quota = PartialQuota(uploads_per_client=0, bytes_per_client=0, uploads=1, bytes=CHUNK)
    store = PartialStore(tmp_path, quota)
    upload = store.open(ALICE, UPLOAD, "a", 3 * CHUNK)  # held: never dropped
    assert store.enforce_quota(BOB.hex()) == 0
    assert store.enforce_quota(ALICE.hex()) == 0
    assert store.usage() == (1, 0)
    upload.discard()


def test_a_sweep_of_every_client_goes_on_past_one_within_its_limits(tmp_path: Path) -> None:
    """The upload just suspended is spared even over a limit on its own; a sweep of
    every client (``enforce_quota()``, as at start-up) drops it, though a client within
    its limits comes before it."""
    quota = PartialQuota(uploads_per_client=2, bytes_per_client=CHUNK)
    store = PartialStore(tmp_path, quota)
    store.open(ALICE, UPLOAD, "a", 10).suspend()  # first in the index, within its limits
    big = store.open(BOB, UPLOAD, "b", 3 * CHUNK)
    big.write(1, bytes(CHUNK))
    big.write(2, bytes(CHUNK))
    big.suspend()
    assert store.usage() == (2, 2 * CHUNK) and big.part.exists()  # spared
    assert store.enforce_quota() == 1
    assert store.usage() == (1, 0) and not big.part.exists()


def _suspended_with_a_chunk(store: PartialStore, client: bytes, number: int) -> Path:
    upload = store.open(client, bytes([number]) * 16, f"f{number}", 3 * CHUNK)
    upload.write(1, bytes(CHUNK))
    upload.suspend()
    return upload.part


def test_the_sweep_stops_when_a_client_s_bytes_are_back_at_its_limit(tmp_path: Path) -> None:
    """Exactly the limit is within it: the oldest goes, the next oldest stays."""
    limit = 2 * CHUNK
    store = PartialStore(tmp_path, PartialQuota(uploads_per_client=9, bytes_per_client=limit))
    oldest = _suspended_with_a_chunk(store, ALICE, 1)
    older = _suspended_with_a_chunk(store, ALICE, 2)
    assert store.usage() == (2, limit)
    newest = _suspended_with_a_chunk(store, ALICE, 3)  # over: the oldest goes
    assert store.usage() == (2, limit)
    assert not oldest.exists() and older.exists() and newest.exists()
