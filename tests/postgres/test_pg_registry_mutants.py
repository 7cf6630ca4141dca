"""``eft_server.pg_registry`` in-process on a real database, for what the replica tests
(test_pg_engine.py) leave open: every field of every record through the database and
back, renames and forgets, the count, a later flush's changes kept over an earlier
one's, close, and each error's class and message. Found by mutation testing
(docs/TESTING.md); each test is about one promise of the engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_server import pg_schema
from eft_server.pg_connect import PgSettings, RegistryUrlError, parse_registry_url
from eft_server.pg_registry import POOL_SIZE, PgRegistry
from eft_server.pg_schema import (
    MIGRATION_LOCK,
    MIGRATIONS,
    NAME_CONSTRAINTS,
    SchemaTooNew,
    migrate,
)
from eft_server.registry_errors import NameTaken, RegistryError, RegistryUnreachable
from tests.support.postgres import PORT, SUPERUSER, PostgresCluster

ALICE = ClientRecord(b"\x01" * 16, "alice", 11.5, b"alice's public key")
VERA = ClientRecordV4(b"\x04" * 16, "vera", b"\x05" * 32, 21.25, 22.5)
REPORT = FileRecord(ALICE.client_id, "report.pdf", "/data/a/report.pdf", 1234, 987654321, True)
# not the default algorithm: the column is read back, not assumed
PLAN = FileRecordV4(VERA.client_id, "docs/plan.pdf", "/data/v/plan", 77, b"\x09" * 32, "other")


@pytest.fixture
def settings(postgres: PostgresCluster, pg_url: str) -> PgSettings:
    return parse_registry_url(pg_url, postgres.server_env())


@pytest.fixture
def registry(settings: PgSettings) -> Iterator[PgRegistry]:
    opened = PgRegistry(settings)
    yield opened
    opened.close()


def _flush(registry: PgRegistry) -> None:
    done = registry.flush()
    assert done is not None
    done.result(10)


def _all_saved(registry: PgRegistry) -> None:
    registry.save_client(ALICE)
    registry.save_client_v4(VERA)
    registry.save_file(REPORT)
    registry.save_file_v4(PLAN)


def _all_read(registry: PgRegistry) -> None:
    assert registry.client_by_id(ALICE.client_id) == ALICE
    assert registry.client_by_name("alice") == ALICE
    assert registry.client_v4_by_key(VERA.static_public) == VERA
    assert registry.client_v4_by_name("vera") == VERA
    assert registry.client_v4_by_id(VERA.client_id) == VERA
    assert registry.file(ALICE.client_id, "report.pdf") == REPORT
    assert registry.file_v4(VERA.client_id, "docs/plan.pdf") == PLAN
    assert list(registry.clients()) == [ALICE]
    assert list(registry.clients_v4()) == [VERA]
    assert list(registry.files()) == [REPORT]
    assert list(registry.files_v4()) == [PLAN]


def test_every_field_is_written_and_read_back_by_another_replica(
    registry: PgRegistry, settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    _all_saved(registry)
    assert registry.client_count() == 2
    _flush(registry)
    other = PgRegistry(settings)
    try:
        assert other.database_reads == 0
        _all_read(other)  # nothing pending there: every lookup is the database's
        assert other.database_reads == 7
        assert other.client_count() == 2  # both versions' clients, counted at start
        assert other.migrations_applied == 0
        assert other.schema_version == len(MIGRATIONS)
    finally:
        other.close()
    assert registry.migrations_applied == len(MIGRATIONS)
    (row,) = postgres.fetch(pg_database, "SELECT aes_key FROM clients")
    assert row["aes_key"] is None  # never the AES key (EFT-18)
    assert registry.client_by_name("nobody") is None
    assert registry.file(ALICE.client_id, "other") is None


def test_unwritten_changes_are_read_without_asking_the_database(registry: PgRegistry) -> None:
    _all_saved(registry)
    before = registry.database_reads
    for _ in range(2):
        assert registry.client_by_id(ALICE.client_id) == ALICE
        assert registry.client_by_name("alice") == ALICE
        assert registry.client_v4_by_key(VERA.static_public) == VERA
        assert registry.client_v4_by_name("vera") == VERA
        assert registry.client_v4_by_id(VERA.client_id) == VERA
        assert registry.file(ALICE.client_id, "report.pdf") == REPORT
        assert registry.file_v4(VERA.client_id, "docs/plan.pdf") == PLAN
    assert registry.database_reads == before


def test_a_rename_frees_the_old_name_at_once_and_in_the_database(registry: PgRegistry) -> None:
    _all_saved(registry)
    _flush(registry)
    renamed = ClientRecord(ALICE.client_id, "alicia", 30.0, ALICE.public_key)
    registry.save_client(renamed)
    assert registry.client_by_name("alice") is None
    assert registry.client_by_name("alicia") == renamed
    assert registry.client_count() == 2  # the same client
    _flush(registry)
    assert registry.client_by_name("alice") is None
    assert list(registry.clients()) == [renamed]
    assert registry.client_count() == 2


def test_a_pending_name_of_another_client_is_a_callers_bug(registry: PgRegistry) -> None:
    registry.save_client(ALICE)
    with pytest.raises(ValueError, match="'alice' belongs to another client"):
        registry.save_client(ClientRecord(b"\x02" * 16, "alice", 1.0))
    registry.save_client(ClientRecord(ALICE.client_id, "alice", 99.0))  # itself: fine
    registry.save_client_v4(VERA)
    with pytest.raises(ValueError, match="'vera' belongs to another version-4 client"):
        registry.save_client_v4(ClientRecordV4(b"\x06" * 16, "vera", b"\x07" * 32, 1.0, 1.0))
    registry.save_client_v4(VERA.seen(50.0))  # itself: fine
    assert registry.client_count() == 2


def test_a_version_4_client_seen_again_keeps_its_registration_time(
    registry: PgRegistry, settings: PgSettings
) -> None:
    registry.save_client_v4(VERA)
    _flush(registry)
    again = ClientRecordV4(VERA.client_id, "vera", VERA.static_public, 99.0, 100.0)
    registry.save_client_v4(again)
    expected = VERA.seen(100.0)
    assert registry.client_v4_by_key(VERA.static_public) == expected
    assert registry.client_v4_by_name("vera") == expected
    assert registry.client_v4_by_id(VERA.client_id) == expected
    assert registry.client_count() == 1
    _flush(registry)
    other = PgRegistry(settings)
    try:
        assert other.client_v4_by_key(VERA.static_public) == expected
    finally:
        other.close()


def test_forgetting_removes_each_record_at_once_and_in_the_database(
    registry: PgRegistry, settings: PgSettings
) -> None:
    _all_saved(registry)
    _flush(registry)
    registry.forget_file(ALICE.client_id, "report.pdf")
    registry.forget_file_v4(VERA.client_id, "docs/plan.pdf")
    registry.forget_client(ALICE.client_id)
    registry.forget_client_v4(VERA.static_public)
    for view in (registry,):
        assert view.file(ALICE.client_id, "report.pdf") is None
        assert view.file_v4(VERA.client_id, "docs/plan.pdf") is None
        assert view.client_by_id(ALICE.client_id) is None
        assert view.client_by_name("alice") is None
        assert view.client_v4_by_key(VERA.static_public) is None
        assert view.client_v4_by_name("vera") is None
        assert view.client_v4_by_id(VERA.client_id) is None
    assert registry.client_count() == 0
    _flush(registry)
    other = PgRegistry(settings)
    try:
        assert other.client_count() == 0
        assert other.client_by_name("alice") is None
        assert other.client_v4_by_id(VERA.client_id) is None
        assert list(other.files()) == [] and list(other.files_v4()) == []
    finally:
        other.close()


def test_forgetting_an_unknown_client_changes_nothing(registry: PgRegistry) -> None:
    registry.save_client(ALICE)
    _flush(registry)
    registry.forget_client_v4(b"\x0a" * 32)
    assert registry.flush() is None  # nothing to write
    registry.forget_client(b"\x0b" * 16)
    assert registry.client_count() == 1
    _flush(registry)
    assert registry.client_by_name("alice") == ALICE


def test_a_refused_flush_gives_its_clients_back_to_the_count(
    registry: PgRegistry, settings: PgSettings
) -> None:
    other = PgRegistry(settings)
    try:
        other.save_client(ClientRecord(b"\x02" * 16, "alice", 1.0))
        _flush(other)
    finally:
        other.close()
    registry.save_client(ALICE)
    registry.save_client_v4(VERA)
    assert registry.client_count() == 2
    done = registry.flush()
    assert done is not None
    with pytest.raises(NameTaken, match=r"clients_name_unique"):
        done.result(10)
    assert registry.client_count() == 0
    assert registry.client_v4_by_name("vera") is None  # the transaction wrote nothing


def test_a_key_taken_under_another_name_says_so(registry: PgRegistry, settings: PgSettings) -> None:
    other = PgRegistry(settings)
    try:
        other.save_client_v4(VERA)
        _flush(other)
    finally:
        other.close()
    registry.save_client_v4(ClientRecordV4(VERA.client_id, "vera2", VERA.static_public, 1.0, 1.0))
    done = registry.flush()
    assert done is not None
    with pytest.raises(NameTaken, match=r"^the key is registered under another name$"):
        done.result(10)


def test_a_later_flush_keeps_its_change_pending_over_an_earlier_one(
    registry: PgRegistry, settings: PgSettings
) -> None:
    first = ClientRecord(ALICE.client_id, "alice", 1.0)
    later = ClientRecord(ALICE.client_id, "alice", 2.0)
    registry.save_client(first)
    first_flush = registry.flush()
    registry.save_client(later)  # its own segment, not yet flushed
    assert first_flush is not None
    first_flush.result(10)
    before = registry.database_reads
    assert registry.client_by_id(ALICE.client_id) == later  # still pending: newer
    assert registry.database_reads == before
    _flush(registry)
    assert registry.client_by_id(ALICE.client_id) == later
    assert registry.database_reads == before + 1  # written: asked again


def test_close_writes_what_is_pending(settings: PgSettings) -> None:
    registry = PgRegistry(settings)
    _all_saved(registry)
    registry.close()
    assert not any(thread.name == "eft-postgresql" for thread in threading.enumerate())
    other = PgRegistry(settings)
    try:
        _all_read(other)
    finally:
        other.close()


def test_the_engine_runs_its_loop_on_a_daemon_thread_of_its_own(registry: PgRegistry) -> None:
    (thread,) = [t for t in threading.enumerate() if t.name == "eft-postgresql"]
    assert thread.daemon
    assert registry.timeout == 10.0
    assert registry.shared is True
    pool = registry._pool
    assert (pool.get_min_size(), pool.get_max_size()) == (0, POOL_SIZE)


def test_a_call_with_no_answer_in_time_is_unreachable_and_says_how_long(
    settings: PgSettings,
) -> None:
    registry = PgRegistry(settings)
    registry.timeout = 0.2  # _call's bound from now on (the pool keeps its own)
    try:
        with pytest.raises(RegistryUnreachable) as caught:
            registry._call(asyncio.sleep(3600))
        assert str(caught.value) == f"no answer from {settings.where} within 0.2 s"
        with pytest.raises(RegistryUnreachable) as caught:
            registry._call(asyncio.sleep(3600), timeout=0.1)
        assert str(caught.value) == f"no answer from {settings.where} within 0.1 s"
    finally:
        registry.close()


def test_a_step_remembers_what_it_read_and_the_next_step_asks_again(
    registry: PgRegistry, settings: PgSettings
) -> None:
    registry.save_client(ALICE)
    _flush(registry)
    other = PgRegistry(settings)

    async def step_reads() -> tuple[ClientRecord | None, ClientRecord | None]:
        return registry.client_by_name("alice"), registry.client_by_name("bob")

    async def two_steps() -> None:
        before = registry.database_reads
        assert await step_reads() == (ALICE, None)
        assert await step_reads() == (ALICE, None)  # the first step's memo is kept...
        assert registry.database_reads == before + 2  # ...only within that step
        await asyncio.sleep(0)  # the next step of the loop
        other.save_client(ClientRecord(b"\x02" * 16, "bob", 5.0))
        _flush(other)
        assert registry.client_by_name("bob") == ClientRecord(b"\x02" * 16, "bob", 5.0)

    try:
        asyncio.run(two_steps())
    finally:
        other.close()


def test_a_change_written_within_a_step_is_read_back_from_the_database(
    registry: PgRegistry,
) -> None:
    async def one_step() -> None:
        assert registry.client_by_name("alice") is None  # remembered for the step
        registry.save_client(ALICE)
        registry.save_file(REPORT)  # never read in this step
        _flush(registry)  # written: no longer pending
        assert registry.client_by_name("alice") == ALICE
        assert registry.file(ALICE.client_id, "report.pdf") == REPORT

    asyncio.run(one_step())


def test_pages_follow_the_key_whatever_order_other_columns_have(registry: PgRegistry) -> None:
    """More than a page (1000 rows), file names in the opposite order to the client ids:
    each row once, in key order."""
    count = 1003
    ids = [number.to_bytes(16, "big") for number in range(count)]
    for number, client_id in enumerate(ids):
        registry.save_client(ClientRecord(client_id, f"c{count - number:05}", 1.0))
        registry.save_file(FileRecord(client_id, f"f{count - number:05}", "/x", 1, 2, True))
    done = registry.flush()
    assert done is not None
    done.result(30)
    assert [record.client_id for record in registry.files()] == ids
    assert [record.name for record in registry.clients()] == [
        f"c{number:05}" for number in range(1, count + 1)
    ]


def test_a_newer_schema_is_refused_and_the_loop_stopped(
    settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    PgRegistry(settings).close()
    newer = len(MIGRATIONS) + 1
    postgres.execute(pg_database, "INSERT INTO eft_schema (version) VALUES ($1)", newer)
    with pytest.raises(SchemaTooNew):
        PgRegistry(settings)
    assert not any(thread.name == "eft-postgresql" for thread in threading.enumerate())


def test_a_failing_read_is_unreachable_and_names_the_database(
    registry: PgRegistry, settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    postgres.execute(pg_database, "ALTER TABLE clients RENAME TO clients_gone")
    with pytest.raises(RegistryUnreachable) as caught:
        registry.client_by_id(ALICE.client_id)
    assert str(caught.value).startswith(settings.where + ": ")
    assert "clients" in str(caught.value)
    assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)


def test_a_read_that_outlasts_the_timeout_is_unreachable(
    settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    registry = PgRegistry(settings)
    registry.timeout = 0.5  # _call's bound; the statement's own is still 10 s

    async def hold_the_table(locked: asyncio.Event, release: asyncio.Event) -> None:
        connection = await postgres.connect(pg_database)
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await release.wait()
        finally:
            await connection.close()

    async def scenario() -> BaseException:
        locked, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(hold_the_table(locked, release))
        await locked.wait()
        try:
            await asyncio.to_thread(registry.client_by_id, ALICE.client_id)
        except RegistryUnreachable as exc:
            return exc
        finally:
            release.set()
            await holder
        raise AssertionError("the read did not fail")

    try:
        error = asyncio.run(scenario())
    finally:
        registry.close()
    assert str(error) == f"no answer from {settings.where} within 0.5 s"


def test_a_write_refused_by_another_constraint_is_a_registry_error(
    registry: PgRegistry, settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    postgres.execute(pg_database, "CREATE UNIQUE INDEX files_one_path ON files (path_name)")
    registry.save_client(ALICE)
    registry.save_file(REPORT)
    registry.save_file(FileRecord(ALICE.client_id, "copy.pdf", REPORT.path, 1, 2, False))
    done = registry.flush()
    assert done is not None
    with pytest.raises(RegistryError) as caught:
        done.result(10)
    assert not isinstance(caught.value, NameTaken)
    assert "files_one_path" in str(caught.value)


def test_a_write_the_database_refuses_names_the_database(
    registry: PgRegistry, settings: PgSettings
) -> None:
    registry.save_file(REPORT)  # no such client: the foreign key refuses it
    done = registry.flush()
    assert done is not None
    with pytest.raises(RegistryError) as caught:
        done.result(10)
    assert not isinstance(caught.value, NameTaken)
    assert str(caught.value).startswith(settings.where + ": ")
    assert "foreign key" in str(caught.value)
    assert registry.file(ALICE.client_id, "report.pdf") is None


# --- the schema (eft_server.pg_schema) -----------------------------------------------


async def _versions(connection: asyncpg.Connection) -> list[int]:
    rows = await connection.fetch("SELECT version FROM eft_schema ORDER BY version")
    return [row["version"] for row in rows]


async def _lock_is_free(connection: asyncpg.Connection) -> bool:
    free: bool = await connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK)
    if free:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return free


def test_migrate_brings_an_empty_database_to_the_last_version_then_does_nothing(
    postgres: PostgresCluster, pg_database: str
) -> None:
    async def scenario() -> None:
        connection = await postgres.connect(pg_database)
        other = await postgres.connect(pg_database)
        try:
            assert await migrate(connection) == len(MIGRATIONS)
            assert await _versions(connection) == list(range(1, len(MIGRATIONS) + 1))
            assert await _lock_is_free(other)  # released once done
            assert await migrate(connection) == 0
            assert await _versions(connection) == list(range(1, len(MIGRATIONS) + 1))
            names = await connection.fetch("SELECT conname FROM pg_constraint")
            assert {row["conname"] for row in names} >= NAME_CONSTRAINTS
            applied = await connection.fetchval("SELECT min(applied_at) FROM eft_schema")
            assert applied is not None
            # the last migration's columns, with their defaults
            await connection.execute(
                "INSERT INTO clients_v4 VALUES ($1, 'v', $2, 1, 1)", bytes(16), bytes(32)
            )
            await connection.execute(
                "INSERT INTO uploads_v4 (client_id, upload_id, file_name, size,"
                " store_upload_id, updated_at) VALUES ($1, $2, 'f', 1, 's', 1)",
                bytes(16),
                b"u",
            )
            row = await connection.fetchrow("SELECT generation, tail_size FROM uploads_v4")
            assert (row["generation"], row["tail_size"]) == (1, 0)
        finally:
            await connection.close()
            await other.close()

    asyncio.run(scenario())


def test_migrate_continues_from_where_a_database_stands(
    postgres: PostgresCluster, pg_database: str
) -> None:
    async def scenario() -> None:
        connection = await postgres.connect(pg_database)
        try:
            await connection.execute(
                "CREATE TABLE eft_schema (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await connection.execute(MIGRATIONS[0])
            await connection.execute("INSERT INTO eft_schema (version) VALUES (1)")
            assert await migrate(connection) == len(MIGRATIONS) - 1
            assert await _versions(connection) == list(range(1, len(MIGRATIONS) + 1))
        finally:
            await connection.close()

    asyncio.run(scenario())


def test_a_newer_schema_says_both_versions_and_frees_the_lock(
    postgres: PostgresCluster, pg_database: str
) -> None:
    async def scenario() -> None:
        connection = await postgres.connect(pg_database)
        other = await postgres.connect(pg_database)
        try:
            await migrate(connection)
            newer = len(MIGRATIONS) + 2
            await connection.execute("INSERT INTO eft_schema (version) VALUES ($1)", newer)
            with pytest.raises(SchemaTooNew) as caught:
                await migrate(connection)
            assert caught.value.version == newer
            assert str(caught.value) == (
                f"the database is at schema version {newer}, newer than this server "
                f"({len(MIGRATIONS)}): upgrade the server"
            )
            assert await _lock_is_free(other)
        finally:
            await connection.close()
            await other.close()

    asyncio.run(scenario())


def test_a_migration_may_outlast_the_connections_own_statement_timeout(
    postgres: PostgresCluster, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration script is bounded by MIGRATION_TIMEOUT, not by the statement timeout
    of the connection it runs on (the registry's 10 s), which would cut a long migration
    short and leave every replica unable to start. A migration of 0.3 s on a connection
    whose statements are bounded at 0.05 s shows it whatever the machine's speed: it can
    only be slower than its sleep."""
    monkeypatch.setattr(pg_schema, "MIGRATIONS", (*MIGRATIONS, "SELECT pg_sleep(0.3)"))

    async def scenario() -> None:
        connection = await asyncpg.connect(
            host=str(postgres.root),
            port=PORT,
            user=SUPERUSER,
            password=postgres.password,
            database=pg_database,
            command_timeout=0.05,
        )
        try:
            assert await pg_schema.migrate(connection) == len(MIGRATIONS) + 1
            assert await _versions(connection) == list(range(1, len(MIGRATIONS) + 2))
        finally:
            await connection.close()

    asyncio.run(scenario())


async def _someone_waits_for_an_advisory_lock(watcher: asyncpg.Connection) -> bool:
    """Whether a session waits for an advisory lock in this test's database (the cluster
    may be shared by other sessions)."""
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return count > 0


def test_migrate_waits_for_the_lock_another_replica_holds(
    postgres: PostgresCluster, pg_database: str
) -> None:
    async def scenario() -> None:
        holder = await postgres.connect(pg_database)
        migrating = await postgres.connect(pg_database)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            task = asyncio.create_task(migrate(migrating))
            # until the migration waits on the lock
            while not await _someone_waits_for_an_advisory_lock(holder):
                assert not task.done()
                await asyncio.sleep(0.01)
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
            assert await task == len(MIGRATIONS)
        finally:
            await holder.close()
            await migrating.close()

    asyncio.run(scenario())


def test_a_replica_waits_for_another_replicas_migrations_beyond_its_timeout(
    settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    """Migrations may take long: a starting replica waits for them (MIGRATION_TIMEOUT),
    not only its usual timeout (1 s here: time enough to connect on a loaded machine).
    The pause below only gives a wrong bound time to show; the test passes however slow
    the machine is."""

    async def scenario() -> PgRegistry:
        holder = await postgres.connect(pg_database)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            opening = asyncio.create_task(asyncio.to_thread(PgRegistry, settings, timeout=1.0))
            while not await _someone_waits_for_an_advisory_lock(holder):
                assert not opening.done()
                await asyncio.sleep(0.01)
            await asyncio.sleep(2.5)  # well past the registry's own timeout
            assert not opening.done()
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
            return await opening
        finally:
            await holder.close()

    registry = asyncio.run(scenario())
    try:
        assert registry.migrations_applied == len(MIGRATIONS)
    finally:
        registry.close()


def test_a_write_that_outlasts_the_timeout_fails_the_flush_and_says_so(
    settings: PgSettings, postgres: PostgresCluster, pg_database: str
) -> None:
    """A statement is bounded too (the pool's command timeout), so a flush never hangs
    on a stuck database; the error names the database and, having no message of its
    own, the timeout's class."""
    registry = PgRegistry(settings, timeout=1.0)  # time enough to connect when loaded

    async def scenario() -> BaseException:
        holder = await postgres.connect(pg_database)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
                registry.save_client(ALICE)
                registry.save_file(REPORT)
                done = registry.flush()
                assert done is not None
                try:
                    await asyncio.wrap_future(done)
                except RegistryError as exc:
                    return exc
                raise AssertionError("the flush did not fail")
        finally:
            await holder.close()

    try:
        error = asyncio.run(scenario())
    finally:
        registry.close()
    assert not isinstance(error, NameTaken)
    assert str(error) == f"{settings.where}: TimeoutError"


# --- the settings (eft_server.pg_connect): no database needed -------------------------


def test_a_url_with_credentials_is_refused_saying_where_they_go() -> None:
    with pytest.raises(RegistryUrlError) as caught:
        parse_registry_url("postgresql://eft:secret@db.example/eft", {})
    assert str(caught.value) == (
        "--registry must not hold a user or a password (the command line is visible to "
        "every user of the machine): set EFT_PG_USER and EFT_PG_PASSWORD_FILE "
        "(or EFT_PG_PASSWORD, or a PGPASSFILE)"
    )


def test_a_url_without_a_database_says_what_is_expected() -> None:
    with pytest.raises(RegistryUrlError) as caught:
        parse_registry_url("postgresql://db.example/", {})
    assert str(caught.value) == (
        "--registry 'postgresql://db.example/': expected postgresql://host[:port]/dbname "
        "(a host and one database name)"
    )


def test_a_database_name_is_taken_whole() -> None:
    settings = parse_registry_url("postgresql://db.example/XX_eft", {})
    assert settings.database == "XX_eft"


def test_the_password_comes_from_the_environment_or_its_file_less_the_newline(
    tmp_path: Path,
) -> None:
    assert parse_registry_url("postgresql://h/d", {"EFT_PG_PASSWORD": "pw"}).password == "pw"
    assert parse_registry_url("postgresql://h/d", {}).password is None
    secret = tmp_path / "password"
    secret.write_bytes("pässX \t\r\n".encode())
    settings = parse_registry_url("postgresql://h/d", {"EFT_PG_PASSWORD_FILE": str(secret)})
    assert settings.password == "pässX \t"  # only the line ending is not in it
    secret.write_bytes(b"pwX\n")
    settings = parse_registry_url("postgresql://h/d", {"EFT_PG_PASSWORD_FILE": str(secret)})
    assert settings.password == "pwX"
