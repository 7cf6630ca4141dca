"""Version 4's ``registration_lost``: the registry refused, when writing it, the identity
the session had just answered (a shared registry, another server first). The driver
drops the unsent answer and sends this instead; the client reads the refusal it knows,
sealed with the nonce it expects (the dropped answer was never sealed)."""

from __future__ import annotations

import pytest

from eft_protocol.codes import ResponseCode
from eft_protocol.errors import NameTaken
from eft_protocol.noise import KeyPair
from eft_protocol.registry import ClientRecordV4, MemoryRegistry
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.handshake import client_id_for

from .memory_link_v4 import ClientEnd, Clock, Disk, ServerEnd

SERVER_KEY = KeyPair.generate()


def _answered_then_lost(registry: MemoryRegistry, key: KeyPair, *, register: bool) -> ClientEnd:
    """The handshake up to the intent; its answer replaced by ``registration_lost``."""
    server = ServerEnd(SERVER_KEY, registry, Disk(), Clock())
    session = v4c.ClientSessionV4(key, "zoe", register=register, check_server=lambda _: None)
    client = ClientEnd(server, session, lambda number, frame: frame)
    client.send(session.start())
    (intent,) = client.receive().send
    effects = server.session.receive_data(intent, server.clock.now)
    answer = ResponseCode.REGISTERED if register else ResponseCode.RECONNECTED
    assert [e.code for e in effects if isinstance(e, v4s.SendFrame)] == [answer]
    server._apply(server.session.registration_lost())  # the driver's part
    assert server.closed
    return client


def test_a_lost_registration_is_refused_as_a_taken_name() -> None:
    client = _answered_then_lost(MemoryRegistry(), KeyPair.generate(), register=True)
    with pytest.raises(NameTaken):
        client.receive()


def test_a_lost_login_is_refused_as_an_unknown_identity() -> None:
    registry, key = MemoryRegistry(), KeyPair.generate()
    registry.save_client_v4(ClientRecordV4(client_id_for(key.public), "zoe", key.public, 1, 1))
    client = _answered_then_lost(registry, key, register=False)
    with pytest.raises(v4c.UnknownIdentity):
        client.receive()
