"""``HelloGate``'s hold: once its DH budget is found spent, the server stays under load
for ``load_hold`` seconds (issue 18: a flood that ignores cookies took the whole budget
every second without it)."""

from __future__ import annotations

from eft_protocol.v4 import admission as adm
from eft_protocol.v4.admission import Admission, HelloGate

FLOOD = bytes([127, 0, 0, 3])
KEY = bytes(range(32))


def _spend(gate: HelloGate, now: float) -> None:
    while gate.admit(FLOOD, KEY, b"", now) is Admission.ANSWER:
        pass


def test_the_server_holds_load_for_five_seconds_and_a_bare_gate_for_none() -> None:
    assert adm.UNDER_LOAD_HOLD == 5.0
    assert HelloGate().load_hold == 0.0


def test_without_a_hold_the_load_ends_with_the_estimate() -> None:
    gate = HelloGate(cookies_above=2)
    _spend(gate, 10.0)
    assert gate.under_load(10.0) is True
    assert gate.under_load(12.0) is False  # two seconds on: no answer is recent
    assert gate.admit(FLOOD, KEY, b"", 12.0) is Admission.ANSWER


def test_once_the_budget_is_spent_the_load_holds_until_the_hold_ends() -> None:
    gate = HelloGate(cookies_above=2, load_hold=5.0)
    _spend(gate, 10.0)  # found spent at 10.0: held until 15.0
    assert gate.answered == 2
    assert gate.admit(FLOOD, KEY, b"", 12.0) is Admission.COOKIE  # the estimate is 0 here
    assert gate.under_load(14.999) is True
    assert gate.under_load(15.0) is False
    assert gate.admit(FLOOD, KEY, b"", 15.0) is Admission.ANSWER
    assert gate.answered == 3


def test_the_hold_restarts_whenever_the_budget_is_found_spent_again() -> None:
    gate = HelloGate(cookies_above=2, load_hold=5.0)
    _spend(gate, 10.0)
    _spend(gate, 15.5)  # the hold ended; two more answers, spent again at 15.5
    assert gate.answered == 4
    assert gate.under_load(20.0) is True
    assert gate.under_load(20.5) is False


def test_a_cookie_still_buys_a_dh_during_the_hold() -> None:
    gate = HelloGate(cookies_above=2, load_hold=5.0)
    _spend(gate, 10.0)
    cookie = gate.cookie_for(FLOOD, KEY, 12.0)
    assert gate.admit(FLOOD, KEY, cookie, 12.0) is Admission.ANSWER


def test_a_clock_stepped_back_before_the_hold_began_ends_it() -> None:
    gate = HelloGate(cookies_above=2, load_hold=5.0)
    _spend(gate, 100.0)
    assert gate.under_load(50.0) is False


def test_never_under_load_without_a_threshold_whatever_the_hold() -> None:
    gate = HelloGate(cookies_above=None, load_hold=5.0)
    for _ in range(1000):
        assert gate.admit(FLOOD, KEY, b"", 1.0) is Admission.ANSWER
    assert gate.under_load(1.0) is False
