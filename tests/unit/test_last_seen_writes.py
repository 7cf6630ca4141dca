"""A v4 client's LastSeen is written at most once a second by one server process: the
registry write was the largest cost of a log-in after the DH (docs/PERFORMANCE.md)."""

from __future__ import annotations

import dataclasses

from eft_protocol.registry import ClientRecordV4
from eft_server.registration_policy import (
    GatedRegistry,
    RegistrationPolicy,
    RegistrationRules,
    Revocations,
)
from eft_server.registry import EphemeralRegistry

BOB = ClientRecordV4(b"\x04" * 16, "bob", b"\x05" * 32, 10.0, 10.0)


class _Counting(EphemeralRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.saved: list[ClientRecordV4] = []

    def save_client_v4(self, record: ClientRecordV4) -> None:
        self.saved.append(record)
        super().save_client_v4(record)


def _gated() -> tuple[GatedRegistry, _Counting]:
    engine = _Counting()
    return GatedRegistry(engine, RegistrationPolicy(RegistrationRules()), Revocations(None)), engine


def test_log_ins_within_a_second_write_once() -> None:
    gated, engine = _gated()
    gated.save_client_v4(BOB)
    for now in (10.2, 10.5, 10.99):
        gated.save_client_v4(BOB.seen(now))
    gated.save_client_v4(BOB.seen(11.0))  # a second on: written
    assert [record.last_seen for record in engine.saved] == [10.0, 11.0]


def test_a_write_of_anything_else_is_never_skipped() -> None:
    gated, engine = _gated()
    gated.save_client_v4(BOB)
    gated.forget_client_v4(BOB.static_public)
    again = dataclasses.replace(BOB, registered_at=10.1, last_seen=10.1)  # registered again
    gated.save_client_v4(again)
    renamed = dataclasses.replace(again, name="bobby", last_seen=10.2)
    gated.save_client_v4(renamed)
    assert engine.saved == [BOB, again, renamed]


def test_a_new_server_process_writes_its_first_log_in() -> None:
    """Only this process's own writes count: what the registry held before is no reason
    to skip (a restarted server's first log-in is written, however soon)."""
    _, engine = _gated()
    engine.save_client_v4(BOB)
    restarted = GatedRegistry(engine, RegistrationPolicy(RegistrationRules()), Revocations(None))
    restarted.save_client_v4(BOB.seen(10.1))
    assert [record.last_seen for record in engine.saved] == [10.0, 10.1]
