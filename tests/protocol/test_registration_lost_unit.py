"""``registration_lost``'s log words (mutation survivors of ``server_session``, docs/
TESTING.md): the notice of a name lost to another server names it and says why, and the
storage failure it becomes in any other state says the same reason."""

from __future__ import annotations

import time

from eft_protocol import errors
from eft_protocol import server_session as ss
from eft_protocol.notices import NameRefused, StorageFailure
from eft_protocol.parser import RequestReceived
from eft_protocol.registry import MemoryRegistry
from eft_protocol.wire import RegisterRequest


def test_a_name_lost_right_after_the_825_is_logged_as_taken_meanwhile() -> None:
    session = ss.ServerSession(MemoryRegistry())
    session.handle(RequestReceived(RegisterRequest(bytes(16), "ann")), time.time())
    refused, sent = session.registration_lost()
    assert refused == NameRefused({"name": "ann", "reason": "taken_meanwhile"})
    assert isinstance(sent, ss.Send) and int(sent.response.code) == 1601


def test_in_any_other_state_the_reason_is_name_taken_meanwhile() -> None:
    effects = ss.ServerSession(MemoryRegistry()).registration_lost()
    notices = [e for e in effects if isinstance(e, StorageFailure)]
    assert notices == [
        StorageFailure({"reason": "name_taken_meanwhile", "detail": "name_taken_meanwhile"})
    ]
    (rejected,) = [e for e in effects if isinstance(e, ss.Rejected)]
    assert isinstance(rejected.error, errors.StorageFailed)
    assert str(rejected.error) == "name_taken_meanwhile"
