"""``SqliteRegistry.forget_client_v4`` (eft-admin free-name): the client gone from every
lookup at once, from the count, and from the file once written; an unknown key leaves
everything as it was."""

from __future__ import annotations

from pathlib import Path

from eft_protocol.registry import ClientRecordV4
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry

BOB = ClientRecordV4(b"\x04" * 16, "bob", b"\x05" * 32, 1.0, 1.0)
CAROL = ClientRecordV4(b"\x06" * 16, "carol", b"\x07" * 32, 2.0, 2.0)


def _settle(registry: SqliteRegistry) -> None:
    flushed = registry.flush()
    if flushed is not None:
        flushed.result(timeout=30)


def test_a_forgotten_v4_client_is_gone_from_every_lookup_the_count_and_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / DATABASE_FILE
    registry = SqliteRegistry(path)
    registry.save_client_v4(BOB)
    registry.save_client_v4(CAROL)
    _settle(registry)
    # cached by each key first: the forget must replace every one
    assert registry.client_v4_by_key(BOB.static_public) == BOB
    assert registry.client_v4_by_name("bob") == BOB
    assert registry.client_v4_by_id(BOB.client_id) == BOB
    assert registry.client_count() == 2
    registry.forget_client_v4(BOB.static_public)
    # seen at once, before the write
    assert registry.client_v4_by_key(BOB.static_public) is None
    assert registry.client_v4_by_name("bob") is None
    assert registry.client_v4_by_id(BOB.client_id) is None
    assert registry.client_count() == 1
    _settle(registry)
    assert registry.client_v4_by_name("bob") is None
    assert registry.client_count() == 1
    assert registry.client_v4_by_key(CAROL.static_public) == CAROL
    registry.close()
    again = SqliteRegistry(path)
    assert again.client_v4_by_key(BOB.static_public) is None
    assert list(again.clients_v4()) == [CAROL]
    assert again.client_count() == 1
    again.close()


def test_forgetting_an_unknown_key_changes_nothing(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / DATABASE_FILE)
    registry.save_client_v4(BOB)
    _settle(registry)
    registry.forget_client_v4(b"\x09" * 32)
    assert registry.flush() is None, "nothing to write"
    assert registry.client_count() == 1
    assert registry.client_v4_by_name("bob") == BOB
    registry.close()
