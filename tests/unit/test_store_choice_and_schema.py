"""Which stores the server writes to (server/eft_server/store_choice.py) and the
registry's SQLite schema steps (server/eft_server/sqlite_schema.py), on their own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from eft_server.config import ServerConfig
from eft_server.file_store import LocalFileStore, LocalUnfinishedUploads
from eft_server.sqlite_schema import MIGRATIONS, migrate
from eft_server.startup import StoreUnusable
from eft_server.store_choice import choose_stores

S3_ENV = {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY": "secret"}


def _dropped(*_: object) -> None:
    pass


def test_no_store_is_the_data_directory(tmp_path: Path) -> None:
    stores = choose_stores(ServerConfig(data_dir=tmp_path), {}, on_drop=_dropped)
    assert isinstance(stores.files, LocalFileStore)
    assert isinstance(stores.unfinished, LocalUnfinishedUploads)
    assert stores.files.local_files_dir == tmp_path / "files"
    assert (stores.description, stores.s3_client) == ("local", None)
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
