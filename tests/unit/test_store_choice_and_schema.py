"""Which stores the server writes to (server/eft_server/store_choice.py) and the
registry's SQLite schema steps (server/eft_server/sqlite_schema.py), on their own."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from eft_server.config import ServerConfig
from eft_server.file_store import LocalFileStore, LocalUnfinishedUploads
from eft_server.partial_uploads import PartialQuota, PartialStore
from eft_server.sqlite_schema import MIGRATIONS, migrate
from eft_server.startup import StoreUnusable
from eft_server.store_choice import Stores, choose_stores

S3_ENV = {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY": "secret"}


def _dropped(*_: object) -> None:
    pass


def test_no_store_is_the_data_directory(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path, max_partial_uploads=7)
    stores = choose_stores(config, {}, on_drop=_dropped)
    assert isinstance(stores.files, LocalFileStore)
    assert isinstance(stores.unfinished, LocalUnfinishedUploads)
    assert stores.files.local_files_dir == tmp_path / "files"
    assert (stores.description, stores.s3_client) == ("local", None)
    assert stores.unfinished.partials.quota.uploads == 7, "the server's limits"
    assert stores.unfinished.partials._on_drop is _dropped
    asyncio.run(stores.open())  # nothing to check, nothing to close
    asyncio.run(stores.close())


@pytest.mark.parametrize(
    ("url", "env", "why"),
    [
        ("http://bucket/prefix", S3_ENV, "is not a store"),
        ("s3://user:pw@bucket/prefix", S3_ENV, "only a bucket and a prefix"),
        ("s3:///prefix", S3_ENV, "names no bucket"),
        ("s3://bucket/prefix", {}, "EFT_S3_ACCESS_KEY_ID"),
        ("s3://bucket/prefix", {**S3_ENV, "EFT_S3_ENDPOINT": "ftp://x"}, "EFT_S3_ENDPOINT"),
    ],
)
def test_an_unusable_s3_store_is_exit_9_with_its_url(
    tmp_path: Path, url: str, env: dict[str, str], why: str
) -> None:
    with pytest.raises(StoreUnusable) as refused:
        choose_stores(ServerConfig(data_dir=tmp_path, store=url), env, on_drop=_dropped)
    assert why in str(refused.value)
    assert refused.value.exit_code == 9 and refused.value.fields == {"store": url}
    assert "secret" not in str(refused.value)


def test_an_s3_store_is_described_by_its_url_never_its_credentials(tmp_path: Path) -> None:
    pytest.importorskip("aiobotocore")  # the `s3` extra
    url = "s3://bucket/prefix"
    stores = choose_stores(ServerConfig(data_dir=tmp_path, store=url), S3_ENV, on_drop=_dropped)
    assert stores.description == url and stores.s3_client is not None
    assert stores.files.local_files_dir is None, "start-up does not reconcile S3 files"


def test_each_step_brings_an_empty_database_to_the_last_version() -> None:
    connection = sqlite3.connect(":memory:")
    assert migrate(connection) == len(MIGRATIONS) == 4
    assert connection.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"clients", "files", "clients_v4", "files_v4"} <= tables
    columns = {row[1] for row in connection.execute("PRAGMA table_info(files_v4)")}
    assert {"Digest", "DigestAlgorithm"} <= columns and "SHA256" not in columns
    assert migrate(connection) == len(MIGRATIONS), "a second run changes nothing"


def test_a_database_part_way_is_brought_forward_from_where_it_is() -> None:
    connection = sqlite3.connect(":memory:")
    connection.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version = 2;")
    connection.execute("INSERT INTO clients VALUES (?, 'a', NULL, 0, NULL)", (bytes(16),))
    connection.commit()
    assert migrate(connection) == len(MIGRATIONS)
    assert connection.execute("SELECT Name FROM clients").fetchall() == [("a",)], "rows kept"


def test_a_newer_database_is_refused_untouched() -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this server"):
        migrate(connection)
    assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_an_s3_store_alone_keeps_its_unfinished_uploads_beside_the_data(tmp_path: Path) -> None:
    """No PostgreSQL registry: the S3 store's own unfinished uploads (their state in the
    data directory), with the server's limits, the drop callback and the file size."""
    pytest.importorskip("aiobotocore")
    from eft_server.s3_store import S3FileStore, part_size_for  # noqa: PLC0415
    from eft_server.s3_unfinished import S3UnfinishedUploads  # noqa: PLC0415

    config = ServerConfig(
        data_dir=tmp_path,
        store="s3://bucket/prefix",
        max_partial_uploads_per_client=3,
        max_file_size=80 << 30,
    )
    stores = choose_stores(config, S3_ENV, on_drop=_dropped)
    assert isinstance(stores.files, S3FileStore) and isinstance(
        stores.unfinished, S3UnfinishedUploads
    )
    assert stores.files.client is stores.s3_client is stores.unfinished.client
    assert stores.files.part_size == part_size_for(80 << 30) > part_size_for(0)
    assert stores.unfinished.state_dir == tmp_path / "v4" / "partial-s3"
    assert stores.unfinished.quota.uploads_per_client == 3
    assert stores.unfinished._on_drop is _dropped
    assert stores.shared is None


def test_an_s3_store_with_a_postgresql_registry_shares_its_unfinished_uploads(
    tmp_path: Path,
) -> None:
    """With ``--registry postgresql://…`` the replicas' unfinished uploads are recorded
    in that database (its credentials from the environment), under the server's limits."""
    pytest.importorskip("aiobotocore")
    pytest.importorskip("asyncpg")
    from eft_server.s3_shared_uploads import SharedUnfinishedUploads  # noqa: PLC0415
    from eft_server.s3_store import S3FileStore  # noqa: PLC0415

    config = ServerConfig(
        data_dir=tmp_path,
        store="s3://bucket/prefix",
        registry="postgresql://db.example:6543/eft",
        max_partial_bytes=12345,
    )
    env = {**S3_ENV, "EFT_PG_USER": "eft", "EFT_PG_PASSWORD": "pw"}
    stores = choose_stores(config, env, on_drop=_dropped)
    assert isinstance(stores.files, S3FileStore)
    assert isinstance(stores.unfinished, SharedUnfinishedUploads)
    assert stores.shared is stores.unfinished
    assert stores.unfinished.client is stores.s3_client is stores.files.client
    pg = stores.unfinished.pg
    assert (pg.host, pg.port, pg.database, pg.user, pg.password) == (
        "db.example",
        6543,
        "eft",
        "eft",
        "pw",
    )
    assert stores.unfinished.quota.bytes == 12345
    assert stores.unfinished._on_drop is _dropped
    assert stores.description == "s3://bucket/prefix"


def test_without_aiobotocore_an_s3_store_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "eft_server.s3_store", None)  # import fails
    url = "s3://bucket/prefix"
    with pytest.raises(StoreUnusable) as refused:
        choose_stores(ServerConfig(data_dir=tmp_path, store=url), S3_ENV, on_drop=_dropped)
    assert "pip install 'eft[s3]'" in str(refused.value)
    assert refused.value.fields == {"store": url}


class _Recorder:
    """Stands in for the S3 client and the shared uploads: what Stores calls, in order."""

    def __init__(self, name: str, calls: list[str], fail: Exception | None = None) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    async def _note(self, what: str) -> None:
        self.calls.append(f"{self.name}.{what}")
        if self.fail is not None and what != "close":
            raise self.fail

    async def open(self) -> None:
        await self._note("open")

    async def connect(self) -> None:
        await self._note("connect")

    async def close(self) -> None:
        await self._note("close")


def test_stores_open_the_s3_client_then_the_shared_records_and_close_them_backwards(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    stores = Stores(
        LocalFileStore(tmp_path),
        LocalUnfinishedUploads(PartialStore(tmp_path, PartialQuota())),
        description="s3://b/p",
        s3_client=_Recorder("s3", calls),
        shared=_Recorder("pg", calls),
    )
    asyncio.run(stores.open())
    asyncio.run(stores.close())
    assert calls == ["s3.open", "pg.connect", "pg.close", "s3.close"]


def test_shared_records_that_cannot_connect_make_the_store_unusable(tmp_path: Path) -> None:
    calls: list[str] = []
    stores = Stores(
        LocalFileStore(tmp_path),
        LocalUnfinishedUploads(PartialStore(tmp_path, PartialQuota())),
        description="s3://b/p",
        s3_client=_Recorder("s3", calls),
        shared=_Recorder("pg", calls, fail=OSError("connection refused")),
    )
    with pytest.raises(StoreUnusable) as refused:
        asyncio.run(stores.open())
    message = str(refused.value)
    assert message.startswith("cannot record unfinished uploads in PostgreSQL: ")
    assert "connection refused" in message
    assert refused.value.fields == {"store": "s3://b/p"}
    assert isinstance(refused.value.__cause__, OSError)
