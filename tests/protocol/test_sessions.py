"""Client and server state machines against each other, in memory, with faults."""

from __future__ import annotations

import pytest

from eft_protocol import crypto, errors
from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import RequestCode
from eft_protocol.wire import (
    CrcOkRequest,
    FilePacket,
    PacketHeader,
    RegisterRequest,
    ServerError,
)

from .memory_link import MemoryLink, connect, send_file

DATA = bytes(range(256)) * 20  # 5120 bytes: 81 packets of 64


def test_register_then_send_a_file() -> None:
    link = MemoryLink()
    client = connect(link, "alice")
    assert client.identity is not None
    history = send_file(link, client, "notes.txt", DATA)
    assert history == ["continue", "file_verified"]
    assert link.store.committed == {(client.identity.client_id, "notes.txt"): DATA}
    assert link.server.state is ss.State.READY


def test_reconnect_gets_a_new_key_and_sends() -> None:
    link = MemoryLink()
    first = connect(link, "bob")
    old_key = link.registry.client_by_name("bob").aes_key  # type: ignore[union-attr]
    second_link = MemoryLink(link.registry)
    second = connect(second_link, "bob", first.identity)
    assert second_link.server.state is ss.State.READY
    assert link.registry.client_by_name("bob").aes_key != old_key  # type: ignore[union-attr]
    send_file(second_link, second, "a.bin", DATA[:100])
    assert second_link.store.committed[(second.client_id, "a.bin")] == DATA[:100]


def test_reconnect_to_a_server_that_forgot_registers_again() -> None:
    link = MemoryLink()
    first = connect(link, "carol")
    fresh = MemoryLink()  # a restarted server with an empty registry
    second = connect(fresh, "carol", first.identity)
    assert second.identity is not None and first.identity is not None
    assert second.identity.client_id != first.identity.client_id
    assert fresh.registry.client_by_name("carol") is not None


def test_a_taken_name_is_refused() -> None:
    link = MemoryLink()
    connect(link, "dave")
    other = MemoryLink(link.registry)
    client = ClientSession("dave")
    other.to_server(client.start())
    with pytest.raises(errors.NameTaken):
        client.receive(other.next_response())


@pytest.mark.parametrize("answer_crc_retry", [False, True])
def test_crc_mismatch_once_then_success(answer_crc_retry: bool) -> None:
    hits = {"left": 1}

    def corrupt_once(frame: bytes) -> bytes:
        if frame[17:19] == RequestCode.SEND_FILE.to_bytes(2, "little") and hits["left"]:
            hits["left"] -= 1
            frame = frame[:-40] + bytes([frame[-40] ^ 1]) + frame[-39:]
        return frame

    link = MemoryLink(answer_crc_retry=answer_crc_retry, corrupt=corrupt_once)
    client = connect(link, "erin")
    history = send_file(link, client, "f.bin", DATA, packet_size=4096)
    assert history[0] == "resend_file+crc_mismatch"
    assert history[-1] == "file_verified"
    assert link.store.committed[(client.client_id, "f.bin")] == DATA
    outcomes = [n.fields["outcome"] for n in link.store.notices if n.event == "transfer"]
    assert outcomes == ["received", "retried", "received", "verified"]


@pytest.mark.parametrize("answer_crc_retry", [False, True])
def test_crc_mismatch_every_time_gives_up_after_four_attempts(answer_crc_retry: bool) -> None:
    def corrupt(frame: bytes) -> bytes:
        if frame[17:19] == RequestCode.SEND_FILE.to_bytes(2, "little"):
            frame = frame[:-40] + bytes([frame[-40] ^ 1]) + frame[-39:]
        return frame

    link = MemoryLink(answer_crc_retry=answer_crc_retry, corrupt=corrupt)
    client = connect(link, "frank")
    with pytest.raises(errors.AttemptsExhausted):
        send_file(link, client, "f.bin", DATA, packet_size=4096)
    assert link.store.committed == {}
    assert link.store.temporary is None
    outcomes = [n.fields["outcome"] for n in link.store.notices if n.event == "transfer"]
    assert outcomes.count("received") == 4
    assert outcomes[-1] == "gave_up"


def test_empty_file_is_one_packet_of_sixteen_bytes() -> None:
    link = MemoryLink()
    client = connect(link, "gina")
    sender = client.begin_file("empty", 0)
    frames = sender.feed(b"") + sender.finish()
    assert len(frames) == 1
    assert len(frames[0]) == 23 + 267 + 16
    link.to_server(frames)
    reply = client.receive(link.next_response())
    link.to_server(reply.send)
    assert client.receive(link.next_response()).file_verified
    assert link.store.committed[(client.client_id, "empty")] == b""


def test_bad_padding_is_one_1607_and_the_connection_goes_on() -> None:
    link = MemoryLink()
    client = connect(link, "hank")
    header = PacketHeader(client.client_id, 32, 20, 1, 2, "x")
    link.to_server([FilePacket(header, bytes(16)).encode()])
    header = PacketHeader(client.client_id, 32, 20, 2, 2, "x")
    link.to_server([FilePacket(header, bytes(16)).encode()])
    assert isinstance(link.next_response(), ServerError)
    assert not link.pending_responses()
    assert [r.error.reason for r in link.store.rejections] == ["bad_padding"]
    assert link.server.state is ss.State.READY
    send_file(link, client, "x", DATA[:20])


def test_a_bad_packet_mid_file_gets_one_answer_after_the_last_packet() -> None:
    link = MemoryLink()
    client = connect(link, "ivy")
    cid = client.client_id
    packets = [PacketHeader(cid, 64, 60, n, 4, "y") for n in (1, 3, 3, 4)]  # 2 is missing
    for header in packets:
        link.to_server([FilePacket(header, bytes(16)).encode()])
        if header.packet_number != 4:
            assert not link.pending_responses()
    assert isinstance(link.next_response(), ServerError)
    assert [r.error.reason for r in link.store.rejections] == ["bad_packet"]
    assert link.store.temporary is None
    assert link.server.state is ss.State.READY


def test_swapped_and_zero_based_packet_numbers_are_accepted() -> None:
    link = MemoryLink()
    client = connect(link, "jo")
    key = link.server._aes_key
    assert key is not None
    ciphertext = crypto.encrypt_file_bytes(key, DATA[:100])  # 112 bytes
    pieces = [ciphertext[0:48], ciphertext[48:96], ciphertext[96:]]
    for number, piece in enumerate(pieces):  # zero-based and swapped
        header = PacketHeader(client.client_id, 112, 100, 3, number, "z")
        link.to_server([FilePacket(header, piece).encode()])
    response = link.next_response()
    assert response.code == 1603
    assert link.store.temporary == DATA[:100]


def test_per_packet_sizes_are_advisory() -> None:
    link = MemoryLink()
    client = connect(link, "kim")
    key = link.server._aes_key
    assert key is not None
    ciphertext = crypto.encrypt_file_bytes(key, DATA[:100])
    for number, piece in enumerate([ciphertext[:64], ciphertext[64:]], start=1):
        header = PacketHeader(client.client_id, len(piece), len(piece), number, 2, "w")
        link.to_server([FilePacket(header, piece).encode()])
    assert link.next_response().code == 1603


def test_more_content_than_declared_is_refused() -> None:
    link = MemoryLink()
    client = connect(link, "lee")
    header = PacketHeader(client.client_id, 16, 5, 1, 1, "v")
    link.to_server([FilePacket(header, bytes(32)).encode()])
    assert isinstance(link.next_response(), ServerError)
    assert [r.error.reason for r in link.store.rejections] == ["size_mismatch"]


def test_requests_out_of_order_are_refused_without_changing_state() -> None:
    link = MemoryLink()
    link.to_server([FilePacket(PacketHeader(bytes(16), 16, 0, 1, 1, "a"), bytes(16)).encode()])
    assert isinstance(link.next_response(), ServerError)
    assert link.server.state is ss.State.IDLE
    client = connect(link, "mo")
    link.to_server([CrcOkRequest(client.client_id, "never-sent").encode()])
    assert isinstance(link.next_response(), ServerError)
    assert [r.error.reason for r in link.store.rejections] == ["out_of_order", "out_of_order"]


def test_another_clients_id_is_refused() -> None:
    link = MemoryLink()
    client = connect(link, "ned")
    header = PacketHeader(b"\x01" * 16, 16, 0, 1, 1, "a")
    link.to_server([FilePacket(header, bytes(16)).encode()])
    assert isinstance(link.next_response(), ServerError)
    assert link.store.rejections[0].error.reason == "client_id_mismatch"
    assert link.store.committed == {}
    assert client.ready


def test_path_in_file_name_is_stored_under_its_base_name() -> None:
    link = MemoryLink()
    client = connect(link, "olga")
    send_file(link, client, "../../etc/passwd", DATA[:10])
    assert link.store.committed == {(client.client_id, "passwd"): DATA[:10]}


def test_second_registration_on_a_connection_is_out_of_order() -> None:
    link = MemoryLink()
    connect(link, "pat")
    link.to_server([RegisterRequest(bytes(16), "pat2").encode()])
    assert isinstance(link.next_response(), ServerError)


def test_transition_table_is_consistent() -> None:
    for (state, outcome), new_state in ss.TRANSITIONS.items():
        assert outcome.code in ss.ALLOWED[state]
        assert isinstance(new_state, ss.State)
    assert ss.ALLOWED[ss.State.IDLE] >= {RequestCode.REGISTER, RequestCode.RECONNECT}
    assert RequestCode.SEND_FILE not in ss.ALLOWED[ss.State.IDLE]


def test_a_registration_that_never_sent_its_key_frees_the_name_after_a_while() -> None:
    link = MemoryLink()
    link.to_server([RegisterRequest(bytes(16), "quinn").encode()])
    assert link.next_response().code == 1600  # ... and the connection breaks here
    soon = MemoryLink(link.registry)
    soon.now = link.now + 1
    soon.to_server([RegisterRequest(bytes(16), "quinn").encode()])
    assert soon.next_response().code == 1601, "the first registration may still finish"
    later = MemoryLink(link.registry)
    later.now = link.now + ss.ServerLimits().unfinished_registration + 1
    client = connect(later, "quinn")
    assert client.ready
    assert later.registry.client_by_name("quinn").public_key is not None  # type: ignore[union-attr]
