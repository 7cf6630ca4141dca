"""The client session's answer to 1607 ("server error"), in memory: the last request is
repeated up to three times, then the session gives up; a 1607 to a file sends the file
again without counting it as one of the four CRC attempts.

Through ClientSession's public API, against the in-memory server of memory_link where a
real server is needed; the 1607s are injected as if the server had sent them.
"""

from __future__ import annotations

import pytest

from eft_protocol import errors
from eft_protocol.client_session import MAX_REQUEST_TRIES, ClientSession, State
from eft_protocol.wire import ServerError

from .memory_link import MemoryLink, connect

DATA = bytes(range(256)) * 4


def test_the_last_request_is_repeated_on_each_1607_then_the_session_gives_up() -> None:
    client = ClientSession("erin")
    register = client.start()
    for retry in range(1, MAX_REQUEST_TRIES):
        reply = client.receive(ServerError())
        assert reply.send == register
        assert reply.server_error_retry == retry
        assert reply.server_error
        assert client.state is State.AWAITING_REGISTRATION
    with pytest.raises(errors.ServerKeptFailing, match=f"{MAX_REQUEST_TRIES} times"):
        client.receive(ServerError())


def test_a_1607_when_no_request_is_waiting_is_unexpected() -> None:
    client = connect(MemoryLink(), "frank")
    with pytest.raises(errors.UnexpectedResponse, match="1607 while ready"):
        client.receive(ServerError())


def test_a_1607_to_a_file_resends_it_as_the_same_attempt() -> None:
    link = MemoryLink()
    client = connect(link, "grace")
    sender = client.begin_file("a.bin", len(DATA), 64)
    sender.feed(DATA)
    sender.finish()  # lost: the server answers 1607 instead of 1603
    assert client.state is State.AWAITING_CRC
    reply = client.receive(ServerError())
    assert reply.resend_file and reply.server_error_retry == 1 and reply.attempt == 1
    assert reply.send == []
    assert client.state is State.READY

    sender = client.begin_file("a.bin", len(DATA), 64)
    assert client.file_attempts == 1  # a 1607 retry is not a CRC attempt
    link.to_server(sender.feed(DATA) + sender.finish())
    replies = []
    while not replies or not replies[-1].file_verified:
        replies.append(client.receive(link.next_response()))
        link.to_server(replies[-1].send)
    assert [r.attempt for r in replies] == [1, 1]
    assert link.store.committed == {(client.client_id, "a.bin"): DATA}


def test_after_a_verified_file_the_next_1607_counts_from_one_again() -> None:
    link = MemoryLink()
    client = connect(link, "heidi")
    for name in ("one.bin", "two.bin"):
        sender = client.begin_file(name, len(DATA), 64)
        sender.feed(DATA)
        sender.finish()
        reply = client.receive(ServerError())
        assert reply.server_error_retry == 1
        sender = client.begin_file(name, len(DATA), 64)
        link.to_server(sender.feed(DATA) + sender.finish())
        reply = client.receive(link.next_response())
        link.to_server(reply.send)
        assert client.receive(link.next_response()).file_verified


def test_1607s_to_the_same_file_count_up_across_its_resends_then_give_up() -> None:
    client = connect(MemoryLink(), "ivan")
    for retry in range(1, MAX_REQUEST_TRIES):
        sender = client.begin_file("a.bin", len(DATA), 64)
        sender.feed(DATA)
        sender.finish()
        reply = client.receive(ServerError())
        assert reply.resend_file and reply.server_error_retry == retry
    sender = client.begin_file("a.bin", len(DATA), 64)
    sender.feed(DATA)
    sender.finish()
    assert client.file_attempts == 1
    with pytest.raises(errors.ServerKeptFailing):
        client.receive(ServerError())
