"""The engine itself on a real database, two instances standing for two replicas: the
interleavings a pair of live servers produce only by chance, made here on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from eft_protocol.parser import RequestReceived
from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord
from eft_protocol.server_session import Send, ServerSession
from eft_protocol.wire import RegisterRequest
from eft_server.pg_connect import parse_registry_url
from eft_server.pg_registry import PgRegistry
from eft_server.registry_errors import NameTaken
from tests.support.postgres import PostgresCluster


@pytest.fixture
def replicas(postgres: PostgresCluster, pg_url: str) -> Iterator[tuple[PgRegistry, PgRegistry]]:
    settings = parse_registry_url(pg_url, postgres.server_env())
    first = PgRegistry(settings)
    second = PgRegistry(settings)
    yield first, second
    first.close()
    second.close()


def test_a_name_committed_by_another_replica_fails_the_flush_with_name_taken(
    replicas: tuple[PgRegistry, PgRegistry],
) -> None:
    first, second = replicas
    assert first.client_by_name("dora") is None  # what first's session saw
    second.save_client(ClientRecord(b"\x02" * 16, "dora", 1.0))
    second_flush = second.flush()
    assert second_flush is not None
    second_flush.result(10)
    first.save_client(ClientRecord(b"\x01" * 16, "dora", 1.0))
    assert first.client_by_name("dora") == ClientRecord(b"\x01" * 16, "dora", 1.0)  # pending
    flushed = first.flush()
    assert flushed is not None
    with pytest.raises(NameTaken):
        flushed.result(10)
    first.revert(flushed)
    held = first.client_by_name("dora")
    assert held is not None and held.client_id == b"\x02" * 16  # the database's truth now
    assert first.client_by_id(b"\x01" * 16) is None


def test_the_v3_session_answers_a_lost_race_with_1601(
    replicas: tuple[PgRegistry, PgRegistry],
) -> None:
    first, second = replicas
    session = ServerSession(first)
    effects = session.handle(RequestReceived(RegisterRequest(bytes(16), "eve")), time.time())
    assert [e.response.code for e in effects if isinstance(e, Send)] == [1600]
    second.save_client(ClientRecord(b"\x03" * 16, "eve", 1.0))  # committed in between
    done = second.flush()
    assert done is not None
    done.result(10)
    flushed = first.flush()
    assert flushed is not None
    with pytest.raises(NameTaken):
        flushed.result(10)
    answer = session.registration_lost()
    assert [e.response.code for e in answer if isinstance(e, Send)] == [1601]
    assert session.client_id is None


def test_a_v4_key_registered_meanwhile_under_another_name_fails_the_flush(
    replicas: tuple[PgRegistry, PgRegistry],
) -> None:
    first, second = replicas
    key, client_id = b"\x07" * 32, b"\x08" * 16
    second.save_client_v4(ClientRecordV4(client_id, "fay", key, 1.0, 1.0))
    done = second.flush()
    assert done is not None
    done.result(10)
    first.save_client_v4(ClientRecordV4(client_id, "gus", key, 2.0, 2.0))
    flushed = first.flush()
    assert flushed is not None
    with pytest.raises(NameTaken):
        flushed.result(10)
    held = first.client_v4_by_key(key)
    assert held is not None and held.name == "fay"


def test_whole_tables_stream_page_by_page(replicas: tuple[PgRegistry, PgRegistry]) -> None:
    first, _ = replicas
    for number in range(1100):
        client_id = number.to_bytes(16, "big")
        first.save_client(ClientRecord(client_id, f"c{number:05}", 1.0, b"k"))
        first.save_file(FileRecord(client_id, "f", "/x", 1, 2, True))
    flushed = first.flush()
    assert flushed is not None
    flushed.result(30)
    assert len({record.name for record in first.clients()}) == 1100
    assert len({record.client_id for record in first.files()}) == 1100
    assert first.client_count() == 1100


def test_a_session_step_reads_each_row_from_the_database_once(
    replicas: tuple[PgRegistry, PgRegistry],
) -> None:
    """The 825's name and new id are read, then the save reads the id again: a step of
    the event loop remembers what it read (the write still goes to the database)."""
    registry, _ = replicas
    session = ServerSession(registry)

    async def one_step() -> list[object]:
        request = RequestReceived(RegisterRequest(bytes(16), "memo"))
        return list(session.handle(request, time.time()))

    before = registry.database_reads
    effects = asyncio.run(one_step())
    assert [e.response.code for e in effects if isinstance(e, Send)] == [1600]
    assert registry.database_reads - before == 2  # the name, the new id: no more
    flushed = registry.flush()
    assert flushed is not None
    flushed.result(10)
    assert registry.client_by_name("memo") is not None  # outside a step: the database
    assert registry.database_reads - before == 3
