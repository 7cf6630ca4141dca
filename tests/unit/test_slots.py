"""The places under ``--max-connections``: whom to shed, and who is in handshake per
address (server/eft_server/slots.py).

EFT-15 (docs/SECURITY.md): at the cap, the oldest unauthenticated connection of the
address holding the most of them is shed; authenticated ones never are.
"""

from __future__ import annotations

from typing import Any, cast

from eft_server.slots import ShedTally, Slot, Slots


class _Transport:
    def __init__(self) -> None:
        self.aborted = 0

    def abort(self) -> None:
        self.aborted += 1


class _Writer:
    def __init__(self) -> None:
        self.transport = _Transport()


class _Connection:
    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated


def _slot(host: str | None, authenticated: bool | None = None) -> Slot:
    """A slot from ``host``; ``authenticated`` None: no version chosen yet."""
    connection = None if authenticated is None else _Connection(authenticated)
    return Slot(host, cast(Any, _Writer()), connection)


def test_a_slot_is_authenticated_only_once_its_connection_says_so() -> None:
    assert _slot("10.0.0.1").authenticated is False
    assert _slot("10.0.0.1", authenticated=False).authenticated is False
    assert _slot("10.0.0.1", authenticated=True).authenticated is True


def test_shedding_aborts_the_slots_transport_once() -> None:
    slot = _slot("10.0.0.1")
    slot.shed()
    assert cast(Any, slot.writer).transport.aborted == 1


def test_full_at_the_capacity_not_before() -> None:
    slots = Slots(2)
    assert (len(slots), slots.full) == (0, False)
    first, second = _slot("a"), _slot("b")
    slots.take(first)
    assert (len(slots), slots.full) == (1, False)
    slots.take(second)
    assert (len(slots), slots.full) == (2, True)
    slots.give_back(first)
    assert (len(slots), slots.full) == (1, False)


def test_giving_back_a_slot_twice_or_one_never_taken_is_harmless() -> None:
    slots = Slots(3)
    kept, gone = _slot("a"), _slot("b")
    slots.take(kept)
    slots.take(gone)
    slots.give_back(gone)
    slots.give_back(gone)
    slots.give_back(_slot("c"))
    assert len(slots) == 1
    assert slots.shed_candidate() is kept


def test_no_candidate_when_empty_or_every_place_is_authenticated() -> None:
    slots = Slots(2)
    assert slots.shed_candidate() is None
    slots.take(_slot("a", authenticated=True))
    slots.take(_slot("b", authenticated=True))
    assert slots.shed_candidate() is None


def test_the_candidate_is_unauthenticated_even_if_older_ones_are_authenticated() -> None:
    slots = Slots(4)
    slots.take(_slot("a", authenticated=True))
    slots.take(_slot("a", authenticated=True))
    waiting = _slot("b", authenticated=False)
    slots.take(waiting)
    assert slots.shed_candidate() is waiting


def test_the_oldest_of_the_address_holding_the_most_waiting_connections() -> None:
    slots = Slots(8)
    lone = _slot("10.0.0.1")  # the oldest of all, but its address holds only one
    slots.take(lone)
    slots.take(_slot("10.0.0.2", authenticated=True))
    slots.take(_slot("10.0.0.2", authenticated=True))  # authenticated: not counted
    flood = [_slot("10.0.0.9"), _slot("10.0.0.9", authenticated=False)]
    for slot in flood:
        slots.take(slot)
    assert slots.shed_candidate() is flood[0]
    slots.give_back(flood[0])
    # one waiting each now: the oldest address first counted wins, its oldest slot
    assert slots.shed_candidate() is lone
    slots.give_back(lone)
    assert slots.shed_candidate() is flood[1]


def test_a_flood_sheds_itself_one_by_one_oldest_first() -> None:
    slots = Slots(6)
    client = _slot("192.0.2.1")
    slots.take(client)
    flood = [_slot("198.51.100.7") for _ in range(4)]
    for slot in flood:
        slots.take(slot)
    shed = []
    for _ in flood[1:]:  # while the flood's address holds more than the client's
        candidate = slots.shed_candidate()
        assert candidate is not None
        shed.append(candidate)
        slots.give_back(candidate)
    assert shed == flood[:-1]
    # one each: the older connection goes first
    assert slots.shed_candidate() is client


def test_unknown_addresses_group_together() -> None:
    slots = Slots(4)
    named = _slot("10.0.0.1")
    slots.take(named)
    unknown = [_slot(None), _slot(None)]
    for slot in unknown:
        slots.take(slot)
    assert slots.shed_candidate() is unknown[0]


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


def test_an_address_s_count_drops_by_one_per_connection_given_back() -> None:
    slots = Slots(10)
    first, second, third = _slot("10.0.0.5"), _slot("10.0.0.5"), _slot("10.0.0.5")
    for slot in (first, second, third):
        slots.take(slot)
    slots.give_back(first)
    assert slots.unauthenticated_from("10.0.0.5") == 2
    slots.give_back(first)  # twice while the address holds others: harmless
    assert slots.unauthenticated_from("10.0.0.5") == 2
    slots.give_back(second)
    assert slots.unauthenticated_from("10.0.0.5") == 1
    assert slots.shed_candidate() is third


def test_a_reported_authentication_stops_counting_at_once() -> None:
    slots = Slots(10)
    connection = _Connection(authenticated=False)
    session = Slot("10.0.0.5", cast(Any, _Writer()), connection)
    waiting = _slot("10.0.0.5", authenticated=False)
    for slot in (session, waiting):
        slots.take(slot)
    assert slots.unauthenticated_from("10.0.0.5") == 2
    connection.authenticated = True
    slots.authenticated(session)
    assert slots.unauthenticated_from("10.0.0.5") == 1
    assert slots.shed_candidate() is waiting


def test_an_unreported_authentication_is_never_shed() -> None:
    """The connection authenticated but the report has not come: the slot is checked
    before it is chosen, so it is passed over all the same."""
    slots = Slots(10)
    connection = _Connection(authenticated=False)
    session = Slot("10.0.0.7", cast(Any, _Writer()), connection)
    slots.take(session)
    second = _slot("10.0.0.7", authenticated=False)
    slots.take(second)
    slots.take(_slot("10.0.0.8"))
    connection.authenticated = True  # no report
    # one waiting each now: the address whose waiting one is older, never the session
    assert slots.shed_candidate() is second
    assert slots.unauthenticated_from("10.0.0.7") == 1


def test_the_first_shed_is_logged_at_once_then_at_most_one_line_an_interval() -> None:
    tally = ShedTally(interval=1.0)
    assert tally.add("10.0.0.3", now=100.0) == 0.0  # shedding starts: said at once
    assert tally.take(100.0) == {"shed": 1, "addresses": {"10.0.0.3": 1}}
    assert tally.add("10.0.0.3", now=100.25) == 0.75  # the next line in 0.75 s
    assert tally.add("10.0.0.3", now=100.5) == 0.5
    assert tally.add("10.0.0.9", now=100.5) == 0.5
    assert tally.pending == 3
    assert tally.take(101.0) == {"shed": 3, "addresses": {"10.0.0.3": 2, "10.0.0.9": 1}}
    assert tally.pending == 0
    assert tally.add("10.0.0.3", now=103.0) == 0.0  # after a quiet interval: at once


def test_a_shed_line_names_the_most_shed_addresses_and_counts_them_all() -> None:
    tally = ShedTally()
    for index in range(8):
        for _ in range(index + 1):
            tally.add(f"10.0.0.{index}", now=0.0)
    line = tally.take(0.0)
    assert line["shed"] == sum(range(1, 9))
    assert line["addresses"] == {f"10.0.0.{index}": index + 1 for index in (7, 6, 5, 4, 3)}
