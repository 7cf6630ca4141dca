"""``registration_lost``: the registry refused, when writing it, a name the session had
just registered (a shared registry, another server first). The driver calls it instead
of ``storage_failed``; the session answers as for a taken name, and only then."""

from __future__ import annotations

import time

from eft_protocol import errors
from eft_protocol import server_session as ss
from eft_protocol.parser import RequestReceived
from eft_protocol.registry import MemoryRegistry
from eft_protocol.server_table import State
from eft_protocol.wire import RegisterRequest


def _codes(effects: list[ss.Effect]) -> list[int]:
    return [int(e.response.code) for e in effects if isinstance(e, ss.Send)]


def test_right_after_the_825_it_is_a_1601_and_the_session_may_register_again() -> None:
    session = ss.ServerSession(MemoryRegistry())
    now = time.time()
    assert _codes(session.handle(RequestReceived(RegisterRequest(bytes(16), "ann")), now)) == [1600]
    assert _codes(session.registration_lost()) == [1601]
    assert (session.state, session.client_id, session.name) == (State.IDLE, None, None)
    retry = session.handle(RequestReceived(RegisterRequest(bytes(16), "ann2")), now)
    assert _codes(retry) == [1600]


def test_in_any_other_state_it_is_a_storage_failure() -> None:
    session = ss.ServerSession(MemoryRegistry())
    effects = session.registration_lost()  # idle: nothing was registered
    rejected = [e for e in effects if isinstance(e, ss.Rejected)]
    assert len(rejected) == 1 and isinstance(rejected[0].error, errors.StorageFailed)
    assert _codes(effects) == []
