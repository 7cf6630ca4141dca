"""EFT-16: the version byte is not authenticated; a refusal can be forged.

Version 4: our client is the victim. It never falls back after the forged refusal, and
an edited first header is refused by the server or, were it accepted, breaks message 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_attacks.downgrade import answer_as_server
from eft_client.errors import ExitCode
from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.errors import ResponseError
from eft_protocol.noise import KeyPair
from eft_protocol.v4.client import ClientSessionV4
from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, ServerProcess
from tests.support.raw_client import RawClient


def test_a_client_that_falls_back_after_a_refusal_is_downgraded_by_a_forged_one(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target()
    if version == 4:
        _our_v4_client_is_not_downgraded(server, attacks, victims, tmp_path)
        return
    mitm = attacks.start("downgrade", "--target", server.address)
    address = mitm.address
    # A newer client's first frame (a version-4 hello: 826 with a 32-byte key share).
    hello = REQUEST_HEADER.pack(bytes(16), 4, RequestCode.SEND_PUBLIC_KEY, 32) + os.urandom(32)

    newer = RawClient(address)
    newer.send(hello)
    refusal = newer.receive()
    assert newer.closed_by_server()
    newer.close()
    fallback = RawClient(address)  # what a client that falls back to version 3 does
    fallback.handshake("alice")
    fallback.close()
    result = mitm.finish()

    assert result.succeeded is expected("EFT-16 forged version refusal", version)
    if result.succeeded:
        assert int(refusal.code) == 1607
        # The forged refusal is what a version-3-only server sends; our server would have
        # answered the hello in version 4 (it speaks both), which the client never saw.
        assert result.result["forged"] == "03470600000000"
        assert result.result["server_speaks_newer"] is True


def _our_v4_client_is_not_downgraded(
    server: ServerProcess,
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(b"hello\n")
    mitm = attacks.start("downgrade", "--target", server.address, "--linger", "1")
    victim = victims("alice", mitm.address)
    run = victim.run([note])
    result = mitm.finish()

    assert result.succeeded is expected("EFT-16 forged version refusal", 4)
    assert result.result["refused"] == 1 and result.result["fallback"] is False
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert "nothing was sent" in run.stderr  # only message 1's ephemeral key went out
    assert not (victim.path / "me.info").exists() and not (victim.path / "me4.info").exists()

    # The version byte rewritten to 3 on the way: our server (--legacy deny) refuses.
    edit = attacks.start(
        "downgrade", "--target", server.address, "--edit-header", "16", "--linger", "0.5"
    )
    run = victims("bob", edit.address).run([note], "--retries", "0")
    relayed = edit.finish()
    assert not relayed.succeeded and relayed.result["server_answers"] == []
    assert run.returncode == ExitCode.CANNOT_CONNECT, run.stderr
    assert "legacy_denied" in [r.get("reason") for r in server.logs()]

    # Any byte of the first header edited, and message 2 made with the real server key
    # over the edited header (as a server that accepted it would): the prologue differs,
    # so message 2 fails to authenticate at the client, which stops before message 3.
    key = server.data_dir / "server.key"
    forged = attacks.start(
        "downgrade", "--target", server.address, "--edit-header", "3", "--server-key", key,
        "--linger", "0.5",
    )  # fmt: skip
    run = victims("carol", forged.address).run([note], "--retries", "0")
    answered = forged.finish()
    assert not answered.succeeded and answered.result["continued"] == 0
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert "authentication" in run.stderr


def test_the_edited_header_alone_is_what_breaks_message_2() -> None:
    """A control for the prologue check above, on our client's state machine: the same
    message 2 over the header the client sent authenticates; over any edited byte, not."""
    server_key = KeyPair.generate()
    for offset in (None, *range(23)):
        client = ClientSessionV4(
            KeyPair.generate(), "carol", register=True, check_server=lambda _fingerprint: None
        )
        first = client.start()
        header = bytearray(first[:23])
        if offset is not None:
            header[offset] ^= 0x01
        message_2 = answer_as_server(server_key, bytes(header), first[23:])
        if offset is None:
            assert client.receive(message_2[:7], message_2[7:]).send  # message 3 goes out
        else:
            with pytest.raises(ResponseError, match="authentication"):
                client.receive(message_2[:7], message_2[7:])
