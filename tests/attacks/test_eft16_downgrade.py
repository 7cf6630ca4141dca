"""EFT-16: the version byte is not authenticated; a refusal can be forged."""

from __future__ import annotations

import os
from collections.abc import Callable

from eft_protocol.codes import REQUEST_HEADER, RequestCode
from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ServerProcess
from tests.support.raw_client import RawClient


def test_a_client_that_falls_back_after_a_refusal_is_downgraded_by_a_forged_one(
    version: int, target: Callable[..., ServerProcess], attacks: Attacks
) -> None:
    server = target()
    mitm = attacks.start("downgrade", "--target", server.address)
    address = mitm.address
    # A newer client's first frame (a version-4 hello: 826 with a 32-byte key share).
    hello = REQUEST_HEADER.pack(bytes(16), 4, RequestCode.SEND_PUBLIC_KEY, 32) + os.urandom(32)

    newer = RawClient.to(address)
    newer.send(hello)
    refusal = newer.receive()
    assert newer.closed_by_peer()
    newer.close()
    fallback = RawClient.to(address)  # what a client that falls back to version 3 does
    fallback.connect_session("alice")
    fallback.close()
    result = mitm.finish()

    assert result.succeeded is expected("EFT-16 forged version refusal", version)
    if result.succeeded:
        assert int(refusal.code) == 1607
        # The forged refusal is what a version-3-only server sends; our server would have
        # answered the hello in version 4 (it speaks both), which the client never saw.
        assert result.result["forged"] == "03470600000000"
        assert result.result["server_speaks_newer"] is True
