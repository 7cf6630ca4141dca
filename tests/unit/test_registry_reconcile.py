"""The server's registry module (server/eft_server/registry.py), in process: choosing the
engine, and start-up reconciliation of the file records with the disk after a crash.

Checksums are hard-coded from POSIX ``cksum`` and BLAKE3's published vector, not computed
by the code under test.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import blake3
import pytest

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_server.pg_connect import PgSettings
from eft_server.registry import (
    EphemeralRegistry,
    is_shared,
    open_registry,
    reconcile,
    reconcile_v4,
)
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

ALICE = bytes(range(16))
BOB = bytes(range(16, 32))
STRANGER = bytes(range(32, 48))
#: byte i is i mod 256, as in tests/protocol/test_cksum_vectors.py
PATTERN_128 = bytes(range(128))
PATTERN_128_CKSUM = 2697320073  # printf ... | cksum
#: more than one 1 MiB read: the checksum runs over every piece
PATTERN_1M1 = bytes(i % 256 for i in range((1 << 20) + 1))
PATTERN_1M1_CKSUM = 3091887422
ABC_CKSUM = 1219131554
ABC_BLAKE3 = bytes.fromhex("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")


def _write(files_dir: Path, client_id: bytes, name: str, data: bytes) -> Path:
    path = files_dir / client_id.hex() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _registry() -> EphemeralRegistry:
    registry = EphemeralRegistry()
    registry.save_client(ClientRecord(ALICE, "alice", 1.0))
    registry.save_client(ClientRecord(BOB, "bob", 1.0))
    return registry


def test_version_3_records_are_made_to_match_the_disk(tmp_path: Path) -> None:
    registry = _registry()
    kept = _write(tmp_path, ALICE, "kept.txt", b"abc")
    replaced = _write(tmp_path, ALICE, "replaced.bin", PATTERN_128)
    gone = tmp_path / ALICE.hex() / "gone.txt"
    kept_record = FileRecord(ALICE, "kept.txt", str(kept), 3, 12345, True)
    registry.save_file(kept_record)  # same size: trusted as it is
    registry.save_file(FileRecord(ALICE, "replaced.bin", str(replaced), 3, ABC_CKSUM, True))
    registry.save_file(FileRecord(ALICE, "gone.txt", str(gone), 3, ABC_CKSUM, True))
    big = _write(tmp_path, BOB, "unrecorded.bin", PATTERN_1M1)

    assert reconcile(registry, tmp_path) == (1, 1, 1)

    assert registry.file(ALICE, "kept.txt") == kept_record
    assert registry.file(ALICE, "replaced.bin") == FileRecord(
        ALICE, "replaced.bin", str(replaced), 128, PATTERN_128_CKSUM, True
    )
    assert registry.file(ALICE, "gone.txt") is None
    assert registry.file(BOB, "unrecorded.bin") == FileRecord(
        BOB, "unrecorded.bin", str(big), len(PATTERN_1M1), PATTERN_1M1_CKSUM, True
    )
    assert reconcile(registry, tmp_path) == (0, 0, 0)  # nothing left to do


def test_version_3_reconciliation_leaves_alone_what_is_not_a_client_s_file(
    tmp_path: Path,
) -> None:
    registry = _registry()
    _write(tmp_path, STRANGER, "orphan.txt", b"abc")  # a client the registry forgot
    (tmp_path / "not-hex").mkdir()
    (tmp_path / "not-hex" / "a.txt").write_bytes(b"abc")
    _write(tmp_path, ALICE[:15], "short-id.txt", b"abc")  # 15 bytes: not a client id
    _write(tmp_path, ALICE + b"\x00", "long-id.txt", b"abc")
    (tmp_path / ALICE.hex() / "a-directory").mkdir(parents=True)
    (tmp_path / "loose.txt").write_bytes(b"abc")  # not in a client's directory

    assert reconcile(registry, tmp_path) == (0, 0, 0)
    assert registry.files() == []


def test_an_empty_unrecorded_file_is_added_with_the_empty_input_s_sum(tmp_path: Path) -> None:
    registry = _registry()
    path = _write(tmp_path, ALICE, "empty", b"")
    assert reconcile(registry, tmp_path) == (1, 0, 0)
    assert registry.file(ALICE, "empty") == FileRecord(
        ALICE, "empty", str(path), 0, 4294967295, True
    )


def _registry_v4() -> EphemeralRegistry:
    registry = EphemeralRegistry()
    registry.save_client_v4(ClientRecordV4(ALICE, "alice", b"k" * 32, 1.0, 1.0))
    registry.save_client_v4(ClientRecordV4(BOB, "bob", b"K" * 32, 1.0, 1.0))
    return registry


def test_version_4_records_are_made_to_match_the_disk(tmp_path: Path) -> None:
    registry = _registry_v4()
    kept = _write(tmp_path, ALICE, "kept.txt", b"xyz")
    replaced = _write(tmp_path, ALICE, "replaced.txt", b"abc")
    gone = tmp_path / ALICE.hex() / "gone.txt"
    kept_record = FileRecordV4(ALICE, "kept.txt", str(kept), 3, b"\x01" * 32)
    registry.save_file_v4(kept_record)
    registry.save_file_v4(FileRecordV4(ALICE, "replaced.txt", str(replaced), 9, b"\x02" * 32))
    registry.save_file_v4(FileRecordV4(ALICE, "gone.txt", str(gone), 3, b"\x03" * 32))
    big = _write(tmp_path, BOB, "unrecorded.bin", PATTERN_1M1)

    assert reconcile_v4(registry, tmp_path) == (1, 1, 1)

    assert registry.file_v4(ALICE, "kept.txt") == kept_record
    assert registry.file_v4(ALICE, "replaced.txt") == FileRecordV4(
        ALICE, "replaced.txt", str(replaced), 3, ABC_BLAKE3
    )
    assert registry.file_v4(ALICE, "gone.txt") is None
    assert registry.file_v4(BOB, "unrecorded.bin") == FileRecordV4(
        BOB, "unrecorded.bin", str(big), len(PATTERN_1M1), blake3.blake3(PATTERN_1M1).digest()
    )
    assert reconcile_v4(registry, tmp_path) == (0, 0, 0)


def test_version_4_reconciliation_leaves_alone_what_is_not_a_client_s_file(
    tmp_path: Path,
) -> None:
    registry = _registry_v4()
    registry.save_client(ClientRecord(STRANGER, "v3-only", 1.0))  # not a version-4 client
    _write(tmp_path, STRANGER, "orphan.txt", b"abc")
    (tmp_path / "not-hex").mkdir()
    (tmp_path / "not-hex" / "a.txt").write_bytes(b"abc")
    _write(tmp_path, ALICE[:15], "short-id.txt", b"abc")
    (tmp_path / ALICE.hex() / "a-directory").mkdir(parents=True)

    assert reconcile_v4(registry, tmp_path) == (0, 0, 0)
    assert registry.files_v4() == []


def test_the_in_memory_engine_has_nothing_to_write() -> None:
    registry = open_registry(Path("/nonexistent"), ephemeral=True)
    assert isinstance(registry, EphemeralRegistry)
    registry.save_client(ClientRecord(ALICE, "alice", 1.0))
    assert registry.flush() is None
    registry.close()
    assert registry.client_by_id(ALICE) == ClientRecord(ALICE, "alice", 1.0)


def test_the_default_engine_is_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    registry = open_registry(tmp_path, ephemeral=False, cache_entries=0)
    try:
        assert isinstance(registry, SqliteRegistry)
        registry.save_client(ClientRecord(ALICE, "alice", 1.0))
        done = registry.flush()
        assert done is not None
        done.result(30)
        assert registry.cached_entries() == 0  # the cache size given
    finally:
        registry.close()
    assert (tmp_path / DATABASE_FILE).is_file()
    assert not is_shared(registry)


class _Shared:
    shared = 1


@pytest.mark.parametrize(("registry", "shared"), [(object(), False), (_Shared(), True)])
def test_a_registry_is_shared_only_if_it_says_so(registry: object, shared: bool) -> None:
    assert is_shared(registry) is shared


def test_every_record_and_file_is_counted_whatever_the_order_on_disk(tmp_path: Path) -> None:
    """Several of each kind, mixed with files to leave alone in the same directories:
    none of them stops the walk (the directory order is the file system's)."""
    registry = _registry()
    for number in range(8):
        for owner in (ALICE, BOB):
            _write(tmp_path, owner, f"new-{number}", b"abc")
            recorded = _write(tmp_path, owner, f"recorded-{number}", b"abc")
            registry.save_file(FileRecord(owner, recorded.name, str(recorded), 3, ABC_CKSUM, True))
        _write(tmp_path, STRANGER, f"orphan-{number}", b"abc")
        grown = _write(tmp_path, ALICE, f"grown-{number}", PATTERN_128)
        registry.save_file(FileRecord(ALICE, grown.name, str(grown), 3, ABC_CKSUM, True))
        gone = tmp_path / BOB.hex() / f"gone-{number}"
        registry.save_file(FileRecord(BOB, gone.name, str(gone), 3, ABC_CKSUM, True))

    assert reconcile(registry, tmp_path) == (16, 8, 8)
    assert len(registry.files()) == 16 + 16 + 8


def test_every_version_4_record_and_file_is_counted_whatever_the_order(tmp_path: Path) -> None:
    registry = _registry_v4()
    for number in range(8):
        for owner in (ALICE, BOB):
            _write(tmp_path, owner, f"new-{number}", b"abc")
            recorded = _write(tmp_path, owner, f"recorded-{number}", b"abc")
            registry.save_file_v4(FileRecordV4(owner, recorded.name, str(recorded), 3, ABC_BLAKE3))
        _write(tmp_path, STRANGER, f"orphan-{number}", b"abc")
        grown = _write(tmp_path, ALICE, f"grown-{number}", b"abcd")
        registry.save_file_v4(FileRecordV4(ALICE, grown.name, str(grown), 3, ABC_BLAKE3))
        gone = tmp_path / BOB.hex() / f"gone-{number}"
        registry.save_file_v4(FileRecordV4(BOB, gone.name, str(gone), 3, ABC_BLAKE3))

    assert reconcile_v4(registry, tmp_path) == (16, 8, 8)
    assert len(registry.files_v4()) == 16 + 16 + 8


class _FakePgRegistry:
    """Stands in for the PostgreSQL engine, which connects as it is made."""

    def __init__(self, settings: PgSettings) -> None:
        self.settings = settings


def test_a_postgresql_url_opens_that_engine_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = types.ModuleType("eft_server.pg_registry")  # no asyncpg needed
    engine.PgRegistry = _FakePgRegistry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "eft_server.pg_registry", engine)
    given = open_registry(
        tmp_path,
        ephemeral=False,
        url="postgresql://db.example:5433/eft",
        environ={"EFT_PG_USER": "alice", "EFT_PG_PASSWORD": "from-the-mapping"},
    )
    assert isinstance(given, _FakePgRegistry)
    assert given.settings == PgSettings("db.example", 5433, "eft", "alice", "from-the-mapping")
    monkeypatch.setenv("EFT_PG_USER", "bob")
    monkeypatch.delenv("EFT_PG_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("EFT_PG_PASSWORD", "from-the-process")
    default = open_registry(tmp_path, ephemeral=False, url="postgres://db.example/eft")
    assert isinstance(default, _FakePgRegistry)
    assert default.settings == PgSettings("db.example", 5432, "eft", "bob", "from-the-process")
    assert not (tmp_path / DATABASE_FILE).exists()  # no SQLite file beside it


def test_without_asyncpg_a_postgresql_url_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "eft_server.pg_registry", None)  # import fails
    with pytest.raises(
        ImportError,
        match=r": a PostgreSQL registry needs asyncpg \(pip install 'eft\[postgres\]'\)$",
    ):
        open_registry(tmp_path, ephemeral=False, url="postgresql://db.example/eft", environ={})


def test_a_directory_not_named_by_a_16_byte_id_is_no_client_s_whatever_is_registered(
    tmp_path: Path,
) -> None:
    """Client ids are 16 bytes on the wire; a directory named after a shorter id holds
    nothing reconciliation may record, even if a registry answered for that id."""
    registry = _registry()
    registry.save_client(ClientRecord(ALICE[:15], "short", 1.0))
    _write(tmp_path, ALICE[:15], "a.txt", b"abc")
    assert reconcile(registry, tmp_path) == (0, 0, 0)
    assert registry.files() == []


def test_version_4_reconciliation_takes_nested_names_and_follows_no_link(
    tmp_path: Path,
) -> None:
    files_dir = tmp_path / "files"
    registry = _registry_v4()
    nested = _write(files_dir, ALICE, "a/b/c.txt", b"abc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_bytes(b"abc")
    (files_dir / ALICE.hex() / "link.txt").symlink_to(elsewhere / "secret.txt")
    (files_dir / BOB.hex()).symlink_to(elsewhere, target_is_directory=True)  # bob's folder
    for number in range(8):  # loose files and links among the client folders
        (files_dir / f"loose-{number}").write_bytes(b"abc")
        (files_dir / f"link-{number}").symlink_to(elsewhere, target_is_directory=True)
        _write(files_dir, ALICE, f"more-{number}.txt", b"abc")

    assert reconcile_v4(registry, files_dir) == (9, 0, 0)
    assert registry.file_v4(ALICE, "a/b/c.txt") == FileRecordV4(
        ALICE, "a/b/c.txt", str(nested), 3, ABC_BLAKE3
    )
    assert registry.file_v4(ALICE, "link.txt") is None
    assert registry.files_v4() and all(r.client_id == ALICE for r in registry.files_v4())
