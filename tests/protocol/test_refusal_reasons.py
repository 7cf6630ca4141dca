"""Every refusal reason the version-3 sessions produce, asserted where it is produced.

A server counts and logs each refused request under its ``reason`` (the metric
``eft_protocol_errors_total`` and the ``request_rejected`` log line), so a reason that
changes or vanishes is a visible change. Each test below drives the public API only:
frames in, through the parser, into a ``ServerSession``; responses out. The wire-level
twins of the server-side cases are in tests/e2e/test_refusals_on_the_wire.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from Crypto.PublicKey import RSA

from eft_protocol import crypto, errors
from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession, Identity
from eft_protocol.codes import ResponseCode
from eft_protocol.parser import ResponseParser
from eft_protocol.wire import (
    Acknowledged,
    CrcGiveUpRequest,
    CrcOkRequest,
    FileReceived,
    PublicKeyRequest,
    ReconnectDenied,
    Reconnected,
    ReconnectRequest,
    Registered,
    RegisterRequest,
    ServerError,
)

from .memory_link import MemoryLink, connect

_KEY: list[RSA.RsaKey] = []


def shared_key() -> RSA.RsaKey:
    """One RSA-1024 key for the module: generating one costs ~100 ms."""
    if not _KEY:
        _KEY.append(crypto.generate_rsa_key())
    return _KEY[0]


def registered(link: MemoryLink, name: str) -> bytes:
    """825 -> 1600 on ``link``; the client id (no key sent yet)."""
    link.to_server([RegisterRequest(bytes(16), name).encode()])
    answer = link.next_response()
    assert isinstance(answer, Registered)
    return answer.client_id


def key_request(client_id: bytes, name: str) -> bytes:
    return PublicKeyRequest(client_id, name, crypto.public_key_der(shared_key())).encode()


def last_reason(link: MemoryLink) -> str:
    assert link.store.rejections, "nothing was refused"
    return link.store.rejections[-1].error.reason


# --- 826: the public key ------------------------------------------------------------


def test_a_key_request_naming_another_client_is_a_name_mismatch() -> None:
    link = MemoryLink()
    client_id = registered(link, "alice")
    link.to_server([key_request(client_id, "mallory")])
    assert isinstance(link.next_response(), ServerError)
    assert last_reason(link) == "name_mismatch"
    record = link.registry.client_by_id(client_id)
    assert record is not None and record.public_key is None, "no key was taken"
    # The right name on the same connection is then accepted.
    link.to_server([key_request(client_id, "alice")])
    assert link.next_response().code is ResponseCode.PUBLIC_KEY_ACCEPTED
    assert link.server.has_key


def test_a_key_request_for_a_registration_forgotten_meanwhile_is_an_unknown_client() -> None:
    link = MemoryLink()
    client_id = registered(link, "alice")
    # What another connection does when it takes over an unfinished registration's name.
    link.registry.forget_client(client_id)
    link.to_server([key_request(client_id, "alice")])
    assert isinstance(link.next_response(), ServerError)
    assert last_reason(link) == "unknown_client"
    assert not link.server.has_key


def test_a_key_request_for_a_client_that_has_a_key_is_refused() -> None:
    link = MemoryLink()
    client_id = registered(link, "alice")
    record = link.registry.client_by_id(client_id)
    assert record is not None
    first_key = b"\x30" + bytes(159)
    link.registry.save_client(replace(record, public_key=first_key))
    link.to_server([key_request(client_id, "alice")])
    assert isinstance(link.next_response(), ServerError)
    assert last_reason(link) == "key_already_set"
    kept = link.registry.client_by_id(client_id)
    assert kept is not None and kept.public_key == first_key, "the first key stays"


# --- 827: a reconnect is denied, with its reason in the notice ----------------------


def _denial_reason(link: MemoryLink) -> object:
    notices = [n for n in link.store.notices if n.event == "reconnect_denied"]
    assert len(notices) == 1
    return notices[0].fields["reason"]


def test_a_reconnect_under_another_name_is_denied_as_a_name_mismatch() -> None:
    link = MemoryLink()
    client = connect(link, "alice")
    assert client.identity is not None
    other = MemoryLink(link.registry)
    other.to_server([ReconnectRequest(client.identity.client_id, "mallory").encode()])
    assert isinstance(other.next_response(), ReconnectDenied)
    assert _denial_reason(other) == "name_mismatch"


def test_a_reconnect_from_an_unknown_id_is_denied_as_an_unknown_client() -> None:
    link = MemoryLink()
    link.to_server([ReconnectRequest(b"\x07" * 16, "alice").encode()])
    assert isinstance(link.next_response(), ReconnectDenied)
    assert _denial_reason(link) == "unknown_client"


def test_a_reconnect_before_any_key_is_denied_as_no_public_key() -> None:
    link = MemoryLink()
    client_id = registered(link, "alice")
    other = MemoryLink(link.registry)
    other.to_server([ReconnectRequest(client_id, "alice").encode()])
    assert isinstance(other.next_response(), ReconnectDenied)
    assert _denial_reason(other) == "no_public_key"


# --- 900 / 902: the verdict must name the file just sent ----------------------------


def _sent_and_checked(link: MemoryLink, name: str, data: bytes) -> ClientSession:
    client = connect(link, "alice")
    sender = client.begin_file(name, len(data), 64)
    link.to_server(sender.feed(data) + sender.finish())
    answer = link.next_response()
    assert isinstance(answer, FileReceived) and answer.file_name == name
    return client


@pytest.mark.parametrize("verdict", [CrcOkRequest, CrcGiveUpRequest], ids=["900", "902"])
def test_a_verdict_naming_another_file_is_refused_and_the_file_still_awaits_its_own(
    verdict: type[CrcOkRequest] | type[CrcGiveUpRequest],
) -> None:
    link = MemoryLink()
    data = b"the file that was sent\n" * 10
    client = _sent_and_checked(link, "sent.txt", data)
    assert client.identity is not None
    client_id = client.identity.client_id
    link.to_server([verdict(client_id, "other.txt").encode()])
    assert isinstance(link.next_response(), ServerError)
    assert last_reason(link) == "out_of_order"
    assert link.store.committed == {}, "nothing committed under either name"
    assert link.store.temporary == bytearray(data), "the upload is kept for its verdict"
    # The verdict for the file that was sent is still taken.
    link.to_server([verdict(client_id, "sent.txt").encode()])
    assert isinstance(link.next_response(), Acknowledged)
    expected = {(client_id, "sent.txt"): data} if verdict is CrcOkRequest else {}
    assert link.store.committed == expected


# --- storage: a failed write is answered 1607 under the reason "storage" ------------


def test_a_storage_failure_after_the_file_is_refused_with_the_storage_reason() -> None:
    link = MemoryLink()
    _sent_and_checked(link, "sent.txt", b"x" * 100)
    effects = link.server.storage_failed("ENOSPC", detail="No space left on device")
    rejected = [e for e in effects if isinstance(e, ss.Rejected)]
    assert [r.error.reason for r in rejected] == ["storage"]
    assert isinstance(rejected[0].response, ServerError)
    notices = [e.fields for e in effects if isinstance(e, ss.Notice)]
    assert notices == [{"reason": "ENOSPC", "detail": "No space left on device"}]


# --- the client's side: bad_response and unexpected_response ------------------------


def _client_waiting_for_1600() -> ClientSession:
    client = ClientSession("alice", new_key=shared_key)
    client.start()
    return client


def test_an_all_zero_client_id_from_the_server_is_a_bad_response() -> None:
    client = _client_waiting_for_1600()
    with pytest.raises(errors.ResponseError) as raised:
        client.receive(Registered(bytes(16)))
    assert raised.value.reason == "bad_response"
    assert raised.value.fatal


def test_a_key_for_another_client_id_is_a_bad_response() -> None:
    identity = Identity("alice", b"\x01" * 16, shared_key())
    client = ClientSession("alice", identity)
    client.start()  # 827
    other = crypto.wrap_aes_key(shared_key().publickey(), bytes(32))
    with pytest.raises(errors.ResponseError) as raised:
        client.receive(Reconnected(b"\x02" * 16, other))
    assert raised.value.reason == "bad_response"


def test_a_response_of_another_version_is_a_bad_response() -> None:
    parser = ResponseParser()
    parser.receive_data(bytes([4]) + (1600).to_bytes(2, "little") + (16).to_bytes(4, "little"))
    with pytest.raises(errors.ResponseError) as raised:
        parser.next_event()
    assert raised.value.reason == "bad_response"


def test_an_unknown_response_code_is_a_bad_response() -> None:
    parser = ResponseParser()
    parser.receive_data(bytes([3]) + (1234).to_bytes(2, "little") + bytes(4))
    with pytest.raises(errors.ResponseError) as raised:
        parser.next_event()
    assert raised.value.reason == "bad_response"


def test_a_response_that_answers_another_request_is_unexpected() -> None:
    client = _client_waiting_for_1600()
    with pytest.raises(errors.UnexpectedResponse) as raised:
        client.receive(Acknowledged(b"\x01" * 16))
    assert raised.value.reason == "unexpected_response"
    assert raised.value.fatal
