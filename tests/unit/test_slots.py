"""The places under --max-connections: whom to shed, and who is in handshake per address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eft_server.slots import Slot, Slots


@dataclass
class _Connection:
    authenticated: bool = False


def _slot(host: str, authenticated: bool = False) -> Slot:
    writer: Any = None  # never shed here
    return Slot(host, writer, _Connection(authenticated))


def test_connections_in_handshake_are_counted_per_address() -> None:
    slots = Slots(100)
    flood = [_slot("127.0.0.3") for _ in range(5)]
    for slot in [*flood, _slot("127.0.0.2"), _slot("127.0.0.2", authenticated=True)]:
        slots.take(slot)
    assert slots.unauthenticated_from("127.0.0.3") == 5
    assert slots.unauthenticated_from("127.0.0.2") == 1  # its session does not count
    assert slots.unauthenticated_from("127.0.0.9") == 0
    for slot in flood:
        slots.give_back(slot)
    assert slots.unauthenticated_from("127.0.0.3") == 0
    slots.give_back(flood[0])  # twice (shed, then the connection's own end): harmless
    assert len(slots) == 2


def test_the_shed_candidate_is_the_oldest_of_the_busiest_address() -> None:
    slots = Slots(4)
    first_of_flood = _slot("127.0.0.3")
    for slot in [_slot("127.0.0.2"), first_of_flood, _slot("127.0.0.3"), _slot("127.0.0.1")]:
        slots.take(slot)
    assert slots.full
    assert slots.shed_candidate() is first_of_flood
