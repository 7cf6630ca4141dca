"""The client session's CRC rules on their own: the server's answers (1603 with a chosen
CRC, 1604, 1607) are made up here, after a real in-memory registration, so each rule of
spec section 4 and each tolerance of section 8 is hit exactly: the 901s a 1604 may
answer, the give-up on the fourth attempt, a 1607 after a CRC retry, the size limit."""

from __future__ import annotations

import random

import pytest

from eft_protocol import crypto, errors
from eft_protocol.client_session import ClientSession, State
from eft_protocol.codes import MAX_FILE_SIZE, padded_size
from eft_protocol.registry import MemoryRegistry
from eft_protocol.wire import (
    ZERO_CLIENT_ID,
    Acknowledged,
    CrcGiveUpRequest,
    CrcOkRequest,
    CrcRetryRequest,
    FileReceived,
    PublicKeyAccepted,
    PublicKeyRequest,
    Registered,
    RegisterRequest,
    RegistrationFailed,
    ServerError,
)

from .memory_link import MemoryLink

DATA = bytes(range(200))


KEY = crypto.generate_rsa_key(random.Random(23).randbytes)  # one key: generating costs


def ready(name: str = "judy") -> ClientSession:
    """A session registered with an in-memory server, holding its AES key."""
    link = MemoryLink()
    client = ClientSession(name, new_key=lambda: KEY)
    link.to_server(client.start())
    while not client.ready:
        link.to_server(client.receive(link.next_response()).send)
    return client


def send(client: ClientSession, name: str = "a.bin") -> int:
    """One attempt at a file; its CRC."""
    sender = client.begin_file(name, len(DATA), 64)
    sender.feed(DATA)
    sender.finish()
    assert client.state is State.AWAITING_CRC
    return sender.cksum


def received(client: ClientSession, cksum: int, name: str = "a.bin") -> FileReceived:
    return FileReceived(client.client_id, padded_size(len(DATA)), name, cksum)


def test_a_1604_answering_each_901_is_skipped_but_not_one_more() -> None:
    client = ready()
    crc = send(client)
    retry = client.receive(received(client, crc ^ 1))
    assert retry.send == [CrcRetryRequest(client.client_id, "a.bin").encode()]
    assert retry.resend_file and retry.crc_mismatch and retry.attempt == 1
    send(client)
    assert client.receive(Acknowledged(client.client_id)) == type(retry)()  # the 901's
    assert client.state is State.AWAITING_CRC
    with pytest.raises(errors.UnexpectedResponse, match=r"^1604 while waiting for the file's CRC$"):
        client.receive(Acknowledged(client.client_id))


def test_two_901s_may_both_be_answered_late() -> None:
    client = ready()
    crc = send(client)
    client.receive(received(client, crc ^ 1))
    send(client)
    client.receive(received(client, crc ^ 1))  # no 1604 came for the first 901 yet
    send(client)
    client.receive(Acknowledged(client.client_id))
    client.receive(Acknowledged(client.client_id))
    ok = client.receive(received(client, crc))
    assert ok.send == [CrcOkRequest(client.client_id, "a.bin").encode()]
    assert ok.attempt == 3 and not ok.crc_mismatch
    assert client.receive(Acknowledged(client.client_id)).file_verified


def test_901s_still_unanswered_when_a_file_is_verified_do_not_excuse_a_later_1604() -> None:
    client = ready()
    crc = send(client)
    client.receive(received(client, crc ^ 1))  # a server that never answers 901
    send(client)
    client.receive(received(client, crc))
    assert client.receive(Acknowledged(client.client_id)).file_verified
    send(client, "b.bin")
    with pytest.raises(errors.UnexpectedResponse, match="1604"):
        client.receive(Acknowledged(client.client_id))


def test_the_fourth_mismatch_sends_902_as_a_mismatch_of_that_attempt() -> None:
    client = ready()
    for attempt in (1, 2, 3):
        crc = send(client)
        reply = client.receive(received(client, crc ^ 1))
        assert (reply.resend_file, reply.attempt) == (True, attempt)
    crc = send(client)
    give_up = client.receive(received(client, crc ^ 1))
    assert give_up.send == [CrcGiveUpRequest(client.client_id, "a.bin").encode()]
    assert give_up.crc_mismatch is True
    assert give_up.attempt == 4
    assert not give_up.resend_file
    with pytest.raises(
        errors.AttemptsExhausted, match=r"^a\.bin: the CRC differed on all 4 attempts$"
    ):
        client.receive(Acknowledged(client.client_id))
    assert client.state is State.READY


def test_a_1607_after_a_crc_retry_counts_from_one() -> None:
    client = ready()
    send(client)
    assert client.receive(ServerError()).server_error_retry == 1  # 1607 to the file
    crc = send(client)
    client.receive(received(client, crc ^ 1))  # the CRC differs: 901, a new attempt
    send(client)
    reply = client.receive(ServerError())
    assert reply.server_error_retry == 1
    assert reply.resend_file and reply.attempt == 2


def test_a_file_can_be_begun_only_when_ready() -> None:
    client = ready()
    send(client)
    with pytest.raises(RuntimeError, match=r"^cannot send a file while awaiting_crc$"):
        client.begin_file("b.bin", 10)
    fresh = ClientSession("kim", new_key=lambda: KEY)
    with pytest.raises(RuntimeError, match=r"^cannot send a file while start$"):
        fresh.begin_file("b.bin", 10)


def test_the_largest_file_version_3_carries_is_accepted_and_no_larger() -> None:
    client = ready()
    sender = client.begin_file("big.bin", MAX_FILE_SIZE)
    assert sender.content_size == 0xFFFFFFF0  # fits the u32 field
    other = ready("ken")
    with pytest.raises(
        ValueError,
        match=rf"^{MAX_FILE_SIZE + 1} bytes is more than version 3 can carry \(under 4 GiB\)$",
    ):
        other.begin_file("big.bin", MAX_FILE_SIZE + 1)
    assert other.state is State.READY


def test_a_registration_hands_the_new_identity_to_save() -> None:
    client = ClientSession("lena", new_key=lambda: KEY)
    client.start()
    client_id = bytes(range(1, 17))
    reply = client.receive(Registered(client_id))
    assert reply.new_identity is not None
    assert reply.new_identity == client.identity
    assert (reply.new_identity.name, reply.new_identity.client_id) == ("lena", client_id)
    assert reply.new_identity.private_key is KEY
    key_request = PublicKeyRequest(client_id, "lena", crypto.public_key_der(KEY)).encode()
    assert reply.send == [key_request]


def test_a_server_answering_with_a_bad_client_id_is_refused() -> None:
    client = ClientSession("mia", new_key=lambda: KEY)
    client.start()
    with pytest.raises(errors.ResponseError, match=r"^the server assigned the all-zero client id$"):
        client.receive(Registered(ZERO_CLIENT_ID))
    client = ClientSession("mia", new_key=lambda: KEY)
    client.start()
    client.receive(Registered(bytes(range(1, 17))))
    wrapped = crypto.wrap_aes_key(KEY.public_key(), bytes(32))
    with pytest.raises(errors.ResponseError, match=r"^the server answered for another client id$"):
        client.receive(PublicKeyAccepted(bytes(range(2, 18)), wrapped))


def test_a_1604_before_any_901_is_refused() -> None:
    client = ready()
    send(client)
    with pytest.raises(errors.UnexpectedResponse, match="1604"):
        client.receive(Acknowledged(client.client_id))


def test_a_taken_name_is_named_in_the_failure() -> None:
    client = ClientSession("nora", new_key=lambda: KEY)
    client.start()
    with pytest.raises(errors.NameTaken, match=r"^the server refused the name 'nora'$"):
        client.receive(RegistrationFailed())


def test_a_driver_starting_twice_is_told_which_step_is_impossible() -> None:
    client = ClientSession("olga", new_key=lambda: KEY)
    client.start()
    client.receive(Registered(bytes(range(1, 17))))
    with pytest.raises(RuntimeError, match=r"^reconnected is not possible in awaiting_key$"):
        client.start()


def test_a_reconnect_approved_or_denied_says_which() -> None:
    registry = MemoryRegistry()
    first = MemoryLink(registry)
    client = ClientSession("pia", new_key=lambda: KEY)
    first.to_server(client.start())
    while not client.ready:
        first.to_server(client.receive(first.next_response()).send)
    assert client.identity is not None
    again = ClientSession("pia", client.identity)
    second = MemoryLink(registry)
    second.to_server(again.start())
    approved = again.receive(second.next_response())
    assert approved.reconnected and not approved.reconnect_denied
    assert again.ready

    stranger = ClientSession("pia", client.identity)
    elsewhere = MemoryLink()  # a server that never heard of this client
    elsewhere.to_server(stranger.start())
    denied = stranger.receive(elsewhere.next_response())
    assert denied.reconnect_denied is True and not denied.reconnected
    assert denied.send == [RegisterRequest(ZERO_CLIENT_ID, "pia").encode()]
    assert stranger.identity is None  # me.info no longer holds: a new one will come


def test_the_new_key_is_drawn_from_the_randomness_given() -> None:
    def registered_key(seed: int) -> bytes:
        client = ClientSession("quinn", randfunc=random.Random(seed).randbytes)
        client.start()
        identity = client.receive(Registered(bytes(range(1, 17)))).new_identity
        assert identity is not None
        return crypto.public_key_der(identity.private_key)

    assert registered_key(7) == crypto.public_key_der(
        crypto.generate_rsa_key(random.Random(7).randbytes)
    )
