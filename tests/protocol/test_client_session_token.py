"""The invitation token in the version-3 client session: it rides in every 825 the
session sends, the first one and the one after a 1605 (a server that forgot the client),
and never in an 827."""

from __future__ import annotations

import random

from eft_protocol import crypto
from eft_protocol.client_session import ClientSession, Identity
from eft_protocol.wire import (
    ZERO_CLIENT_ID,
    ReconnectDenied,
    ReconnectRequest,
    RegisterRequest,
)

KEY = crypto.generate_rsa_key(random.Random(31).randbytes)  # one key: generating costs
TOKEN = b"eft_invite42"


def test_the_first_825_carries_the_token() -> None:
    session = ClientSession("ivy", new_key=lambda: KEY, token=TOKEN)
    (frame,) = session.start()
    assert frame == RegisterRequest(ZERO_CLIENT_ID, "ivy", TOKEN).encode()
    assert RegisterRequest.decode_payload(ZERO_CLIENT_ID, frame[23:]).token == TOKEN


def test_the_825_after_a_1605_carries_the_token_and_the_827_does_not() -> None:
    identity = Identity("ivy", bytes(range(16)), KEY)
    session = ClientSession("ivy", identity, new_key=lambda: KEY, token=TOKEN)
    (reconnect,) = session.start()
    assert reconnect == ReconnectRequest(identity.client_id, "ivy").encode()
    reply = session.receive(ReconnectDenied(identity.client_id))
    assert reply.reconnect_denied
    assert reply.send == [RegisterRequest(ZERO_CLIENT_ID, "ivy", TOKEN).encode()]


def test_no_token_is_the_original_825() -> None:
    (frame,) = ClientSession("ivy", new_key=lambda: KEY).start()
    assert frame[23:] == b"ivy" + bytes(252)
