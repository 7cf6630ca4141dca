"""The version-4 client session alone, sans-IO: the handshake runs against the real
server session, then the test plays the server itself with the connection's record keys,
so every answer (right, wrong, out of turn) is made by hand and every request the client
seals is opened and read. Each test pins one rule of ``eft_protocol.v4.client`` (mutation
testing's survivors, docs/TESTING.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from eft_protocol.codes import (
    MAX_FILE_ATTEMPTS,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    RequestCode,
    ResponseCode,
)
from eft_protocol.errors import AttemptsExhausted, NameTaken, ResponseError, UnexpectedResponse
from eft_protocol.noise import KeyPair
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import handshake as hs
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import DigestAlgorithm

CHUNK = rec.CHUNK
MAX_SIZE = 10 * CHUNK


def exactly(message: str) -> str:
    """A ``match`` for the whole message, not a part of it."""
    return "^" + re.escape(message) + "$"


@dataclass
class Link:
    """A client past the handshake and the server's record keys, to play the server."""

    client: v4c.ClientSessionV4
    send: rec.RecordCipher  # the server's: seals answers
    recv: rec.RecordCipher  # the server's: opens requests
    welcome: v4c.ReplyV4

    def answer(self, code: int, plaintext: bytes) -> v4c.ReplyV4:
        frame = rec.response_record(self.send, code, plaintext)
        assert self.client.payload_size(frame[:7]) == len(frame) - 7
        reply = self.client.receive(frame[:7], frame[7:])
        assert isinstance(reply.send, list)  # [] when nothing is to be sent
        return reply

    def read(self, frame: bytes) -> tuple[bytes, int, bytes]:
        """A request the client sealed: its client id, code and plaintext."""
        header = frame[:23]
        client_id, version, code, size = REQUEST_HEADER.unpack(header)
        assert version == hs.VERSION and size == len(frame) - 23
        return client_id, code, self.recv.open(header, frame[23:])


class GatedRegistry(MemoryRegistry):
    """Lets everyone register, and keeps the tokens the intents carried."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[bytes] = []

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        self.tokens.append(token)
        return None


def state_of(client: v4c.ClientSessionV4) -> v4c.ClientStateV4:
    """The state now (a call, so the type checker does not keep an earlier answer)."""
    return client.state


def _server(registry: MemoryRegistry | None = None) -> v4s.ServerSessionV4:
    return v4s.ServerSessionV4(
        KeyPair.generate(), registry or MemoryRegistry(), max_file_size=MAX_SIZE
    )


def handshake(
    *,
    register: bool = True,
    features: int = hs.SUPPORTED_FEATURES,
    name: str = "alice",
    registry: MemoryRegistry | None = None,
    static: KeyPair | None = None,
) -> tuple[v4c.ClientSessionV4, v4s.ServerSessionV4, list[bytes]]:
    """Client and server up to the client's message 3; returns what the server sends
    after it."""
    server = _server(registry)
    seen: list[str] = []
    client = v4c.ClientSessionV4(
        static or KeyPair.generate(),
        name,
        register=register,
        check_server=seen.append,
        offer=hs.Offer(features=features),
        token=b"tok",
    )
    hello = client.start()
    effects = server.receive(hello[:23], hello[23:], now=0.0)
    (frame,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    assert client.payload_size(frame[:7]) == len(frame) - 7
    reply = client.receive(frame[:7], frame[7:])
    assert seen == [reply.fingerprint]
    assert state_of(client) is v4c.ClientStateV4.AWAITING_WELCOME
    (message3,) = reply.send
    effects = server.receive(message3[:23], message3[23:], now=0.0)
    return client, server, [e.frame for e in effects if isinstance(e, v4s.SendFrame)]


def connect(*, features: int = hs.SUPPORTED_FEATURES) -> Link:
    client, server, sent = handshake(features=features)
    (welcome,) = sent
    reply = client.receive(welcome[:7], welcome[7:])
    assert server._send is not None and server._recv is not None
    return Link(client, server._send, server._recv, reply)


def test_a_registration_is_welcomed_with_our_client_id() -> None:
    link = connect()
    assert link.welcome.registered == link.client.client_id
    assert link.welcome.logged_in is None
    assert link.welcome.send == []
    assert link.client.ready
    assert link.client.revision == 2
    # No next key without a next static; the wide window and PACK with STREAM.
    assert link.client.features == hs.FEATURE_STREAM | hs.FEATURE_WIDE_WINDOW | hs.FEATURE_PACK
    assert link.client.stream_window == rec.WIDE_STREAM_WINDOW
    assert link.client.last_file_id == 0
    assert link.client.unanswered == 0
    assert link.client.file_attempts == 0


def test_before_the_server_hello_there_is_no_revision_or_feature() -> None:
    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    assert (client.revision, client.features, client.stream_window) == (0, 0, 0)
    assert not client.ready
    assert client.offer == hs.Offer()


def test_a_server_without_stream_means_one_file_at_a_time() -> None:
    link = connect(features=0)
    assert link.client.stream_window == 0
    with pytest.raises(RuntimeError, match=exactly("the server did not select STREAM")):
        link.client.begin_stream_file("a", 1, bytes(16))
    with pytest.raises(RuntimeError, match=exactly("the server did not select STREAM")):
        link.client.begin_folder("d")


def _welcome_answers(code: int, plaintext: bytes | None = None, register: bool = True) -> object:
    client, server, _ = handshake(register=register)
    assert server._send is not None
    server._send.counter = 0  # the test answers instead of the server's own answer
    frame = rec.response_record(
        server._send, code, client.client_id if plaintext is None else plaintext
    )
    return client.receive(frame[:7], frame[7:])


def test_the_welcomes_and_refusals_of_message_3() -> None:
    reply = _welcome_answers(ResponseCode.RECONNECTED, register=False)
    assert isinstance(reply, v4c.ReplyV4)
    assert reply.send == []
    assert reply.logged_in is not None and reply.registered is None
    with pytest.raises(NameTaken, match=exactly("the name 'alice' is taken on this server")):
        _welcome_answers(ResponseCode.REGISTRATION_FAILED, b"")
    with pytest.raises(
        v4c.UnknownIdentity, match=exactly("the server does not know this key under this name")
    ):
        _welcome_answers(ResponseCode.RECONNECT_DENIED, b"")
    with pytest.raises(ResponseError, match=exactly("the server confirmed another client id")):
        _welcome_answers(ResponseCode.REGISTERED, bytes(16))
    with pytest.raises(UnexpectedResponse, match=exactly("response 1604 while awaiting_welcome")):
        _welcome_answers(ResponseCode.ACKNOWLEDGED, bytes(8))
    assert v4c.UnknownIdentity("x").reason == "unknown_identity"


def test_the_intent_carries_the_name_and_the_token_only_when_registering() -> None:
    registry = GatedRegistry()
    static = KeyPair.generate()
    client, server, _ = handshake(registry=registry, static=static)
    assert (server.name, server.client_id, server._registered_now) == (
        "alice",
        client.client_id,
        True,
    )
    assert registry.tokens == [b"tok"]
    client, server, sent = handshake(register=False, registry=registry, static=static)
    assert (server.name, server._registered_now) == ("alice", False)
    (welcome,) = sent
    assert client.receive(welcome[:7], welcome[7:]).logged_in == client.client_id


def test_a_failed_record_closes_the_client() -> None:
    link = connect()
    frame = rec.response_record(link.send, ResponseCode.ACKNOWLEDGED, bytes(8))
    tampered = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(
        ResponseError,
        match=exactly("the server's answer failed authentication: record failed authentication"),
    ):
        link.client.receive(tampered[:7], tampered[7:])
    assert state_of(link.client) is v4c.ClientStateV4.CLOSED


def test_response_headers_are_checked_once_ready() -> None:
    link = connect()
    client = link.client
    assert client.payload_size(RESPONSE_HEADER.pack(4, 1604, 16)) == 16
    top = v4c.MAX_RESPONSE_PAYLOAD
    assert top == 4 + 2 + 64 * (1 + 3 + 200) + 16  # a 1608 of 64 refusals
    assert client.payload_size(RESPONSE_HEADER.pack(4, 1604, top)) == top
    for version, size in ((3, 20), (5, 20), (4, 15), (4, top + 1)):
        with pytest.raises(ResponseError, match="bad response header"):
            client.payload_size(RESPONSE_HEADER.pack(version, 1604, size))


def test_headers_before_the_server_hello() -> None:
    client = v4c.ClientSessionV4(
        KeyPair.generate(), "a", register=True, check_server=print, offer=hs.Offer(features=0)
    )
    assert client.payload_size(hs.server_hello_header()) == hs.SERVER_HELLO_SIZE
    assert client.payload_size(hs.cookie_reply_header()) == hs.COOKIE_REPLY_SIZE
    with pytest.raises(v4c.NotVersion4):  # not offered: no next key
        client.payload_size(hs.server_hello_header(hs.FEATURE_NEXT_KEY))
    offered = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    size = offered.payload_size(hs.server_hello_header(hs.FEATURE_NEXT_KEY))
    assert size == hs.SERVER_HELLO_SIZE + hs.NEXT_KEY_SIZE
    offered.offer = hs.Offer(cookie=b"c" * 16)
    with pytest.raises(v4c.NotVersion4):  # one cookie reply per connection
        offered.payload_size(hs.cookie_reply_header())


@pytest.mark.parametrize(
    ("header", "words", "version_3"),
    [
        (RESPONSE_HEADER.pack(4, 1602, 99), "another revision of version 4", False),
        (RESPONSE_HEADER.pack(3, 1600, 16), "answered in version 3 (response 1600)", True),
        (RESPONSE_HEADER.pack(3, 1599, 16), "is not eft's", False),
        (RESPONSE_HEADER.pack(4, 1600, 16), "is not eft's", False),
        (RESPONSE_HEADER.pack(5, 1602, 16), "is not eft's", False),
        (b"HTTP/1.", "in text ('HTTP/1.'...)", False),
        (b"\t \r\nab ", "in text ('ab'...)", False),
        (b"\x7fabcdef", "is not eft's", False),
        (b"\x1fabcdef", "is not eft's", False),
    ],
)
def test_not_version_4_says_what_answered(header: bytes, words: str, version_3: bool) -> None:
    error = v4c.NotVersion4.from_header(header)
    assert words in str(error)
    if "revision" in words:
        assert str(error) == (
            f"the server's answer to the hello is not revision 2's ({header.hex()}...): "
            "a server of another revision of version 4, or something in between"
        )
    assert error.version_3 is version_3
    assert error.reason == "not_version_4"
    if "eft's" in words:
        assert header.hex() in str(error)


def test_a_1607_is_refused_with_a_decision() -> None:
    expected = {
        rec.ErrorCode.BUSY: v4c.Decision.RETRY,
        rec.ErrorCode.INTERNAL: v4c.Decision.RETRY,
        rec.ErrorCode.STORAGE: v4c.Decision.STORAGE_FAILED,
        rec.ErrorCode.REGISTRATION_CLOSED: v4c.Decision.REGISTRATION_CLOSED,
        rec.ErrorCode.BAD_FILE_NAME: v4c.Decision.BAD_FILE_NAME,
        rec.ErrorCode.NO_SPACE: v4c.Decision.NO_ROOM,
        rec.ErrorCode.OVER_QUOTA: v4c.Decision.NO_ROOM,
        rec.ErrorCode.BAD_REQUEST: v4c.Decision.FAIL,
        rec.ErrorCode.TOO_LARGE: v4c.Decision.FAIL,
        rec.ErrorCode.UNKNOWN_DIGEST: v4c.Decision.FAIL,
        99: v4c.Decision.FAIL,
    }
    link = connect()
    for error, decision in expected.items():
        with pytest.raises(v4c.RefusedByServer) as refused:
            link.answer(ResponseCode.SERVER_ERROR, rec.encode_error(error, "why"))
        assert refused.value.error == error
        assert refused.value.decision is decision
        assert str(refused.value) == f"server error {error}: why"
        assert refused.value.reason == "server_error"
    assert link.client.ready  # a refusal before a file leaves the session as it was


def _open(link: Link, name: str = "f", size: int = 5) -> int:
    """A file's metadata sent and answered with chunk 1; returns its file id."""
    _cid, code, meta = link.read(link.client.begin_file(name, size, b"u" * 16))
    assert code == RequestCode.SEND_FILE
    decoded = rec.decode_file_record(meta)
    assert isinstance(decoded, rec.FileMeta)
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(decoded.file_id, 1))
    assert reply.start_chunk == 1
    return decoded.file_id


def _send_all(link: Link, data: bytes, digest: bytes) -> None:
    file_id = link.client.last_file_id
    frame = link.client.chunk_record(1, data)
    _cid, _code, plain = link.read(frame)
    chunk = rec.decode_file_record(plain)
    assert isinstance(chunk, rec.FileChunk) and chunk.final and chunk.file_id == file_id
    link.client.file_hashed(digest)


def test_a_file_one_at_a_time_is_verified() -> None:
    link = connect()
    frame = link.client.begin_file("dir/e\u0301.txt", 5, b"u" * 16, DigestAlgorithm.SHA256)
    client_id, code, meta = link.read(frame)
    assert client_id == link.client.client_id
    assert code == RequestCode.SEND_FILE
    decoded = rec.decode_file_record(meta)
    assert decoded == rec.FileMeta(1, 5, b"u" * 16, "dir/é.txt", DigestAlgorithm.SHA256)
    assert state_of(link.client) is v4c.ClientStateV4.OPENING
    assert link.client.last_file_id == 1
    assert link.client.file_attempts == 1
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    assert (reply.start_chunk, reply.attempt, reply.send) == (1, 1, [])
    assert state_of(link.client) is v4c.ClientStateV4.SENDING
    _send_all(link, b"hello", b"d" * 32)
    assert state_of(link.client) is v4c.ClientStateV4.AWAITING_DIGEST
    received = rec.encode_received(1, 5, b"d" * 32, DigestAlgorithm.SHA256)
    reply = link.answer(ResponseCode.FILE_RECEIVED, received)
    assert (reply.digest_ok, reply.gave_up, reply.attempt) == (True, False, 1)
    (verdict,) = reply.send
    assert link.read(verdict)[1:] == (RequestCode.CRC_OK, rec.encode_file_id(1))
    assert state_of(link.client) is v4c.ClientStateV4.AWAITING_ACK
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(1))
    assert (reply.file_verified, reply.resend_file, reply.attempt) == (True, False, 1)
    assert link.client.ready
    assert link.client.file_attempts == 0
    with pytest.raises(AssertionError):  # the file is done: nothing to abort
        link.client.abort_file()


def test_a_resume_point_must_lie_in_the_file() -> None:
    for file_id, start in ((2, 1), (1, 0), (1, 3)):
        link = connect()
        link.read(link.client.begin_file("f", CHUNK + 1, bytes(16)))  # two chunks
        with pytest.raises(
            ResponseError, match=exactly("the server's resume point is not in this file")
        ):
            link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(file_id, start))
    link = connect()
    link.read(link.client.begin_file("f", CHUNK + 1, bytes(16)))
    assert link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 2)).start_chunk == 2
    assert state_of(link.client) is v4c.ClientStateV4.SENDING
    _cid, _code, plain = link.read(link.client.chunk_record(2, b"x"))
    chunk = rec.decode_file_record(plain)
    assert isinstance(chunk, rec.FileChunk) and chunk.final and chunk.index == 2


def test_a_chunk_before_the_last_is_not_final() -> None:
    link = connect()
    _open(link, size=CHUNK + 1)
    _cid, _code, plain = link.read(link.client.chunk_record(1, b"x" * 10))
    chunk = rec.decode_file_record(plain)
    assert isinstance(chunk, rec.FileChunk) and not chunk.final
    assert state_of(link.client) is v4c.ClientStateV4.SENDING


@pytest.mark.parametrize("final", [False, True])
def test_a_chunk_sealed_into_the_sender_s_buffer_is_the_same_request(final: bool) -> None:
    """The sender seals each chunk into one buffer of its own (issue 22): the record is
    the one ``chunk_record`` makes, its payload a view of that buffer."""
    link = connect()
    _open(link, size=10 if final else CHUNK + 1)
    room = bytearray(rec.CHUNK_PREFIX_SIZE) + b"x" * 10
    sealed = bytearray(rec.MAX_PLAINTEXT + rec.TAG_SIZE)
    pieces = link.client.chunk_record_pieces(1, room, sealed)
    payload = bytes(pieces[1])
    assert bytes(sealed[: len(payload)]) == payload  # sealed in place, not copied
    client_id, code, plain = link.read(b"".join(bytes(piece) for piece in pieces))
    assert (client_id, code) == (link.client.client_id, RequestCode.SEND_FILE)
    chunk = rec.decode_file_record(plain)
    assert chunk == rec.FileChunk(1, 1, final, b"x" * 10)
    expected = v4c.ClientStateV4.AWAITING_DIGEST if final else v4c.ClientStateV4.SENDING
    assert state_of(link.client) is expected


@pytest.mark.parametrize(
    ("received", "words"),
    [
        (rec.encode_received(2, 5, b"d" * 32), "1603 is for another file"),
        (rec.encode_received(1, 6, b"d" * 32), "1603 is for another file"),
        (
            rec.encode_received(1, 5, b"d" * 32, DigestAlgorithm.SHA256),
            "1603 carries a digest of unknown algorithm 2 (asked for 1)",
        ),
    ],
)
def test_a_1603_about_something_else_is_an_error(received: bytes, words: str) -> None:
    link = connect()
    _open(link)
    _send_all(link, b"hello", b"d" * 32)
    with pytest.raises(ResponseError, match=exactly(words)):
        link.answer(ResponseCode.FILE_RECEIVED, received)


def test_a_differing_digest_is_retried_then_given_up() -> None:
    link = connect()
    for attempt in range(1, MAX_FILE_ATTEMPTS + 1):
        file_id = _open(link)
        assert link.client.file_attempts == attempt
        _send_all(link, b"hello", b"d" * 32)
        reply = link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(file_id, 5, bytes(32)))
        assert reply.digest_ok is False
        assert reply.attempt == attempt
        last = attempt == MAX_FILE_ATTEMPTS
        assert reply.gave_up is last
        code = RequestCode.CRC_GIVE_UP if last else RequestCode.CRC_RETRY
        assert link.read(reply.send[0])[1:] == (code, rec.encode_file_id(file_id))
        if last:
            with pytest.raises(
                AttemptsExhausted, match=exactly("f: the digest differed on 4 attempts")
            ):
                link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(file_id))
            assert link.client.ready
        else:
            reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(file_id))
            assert (reply.resend_file, reply.file_verified, reply.attempt) == (
                True,
                False,
                attempt,
            )


def test_another_name_after_a_retry_is_a_first_attempt() -> None:
    link = connect()
    file_id = _open(link, "a")
    _send_all(link, b"hello", b"d" * 32)
    reply = link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(file_id, 5, bytes(32)))
    link.read(reply.send[0])
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(file_id))
    _open(link, "b")
    assert link.client.file_attempts == 1


def test_a_1604_for_another_file_is_an_error() -> None:
    link = connect()
    _open(link)
    _send_all(link, b"hello", b"d" * 32)
    link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 5, b"d" * 32))
    with pytest.raises(ResponseError, match=exactly("1604 is for another file")):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(2))


def test_answers_out_of_turn_are_unexpected() -> None:
    link = connect()
    with pytest.raises(UnexpectedResponse, match="response 1604 while ready"):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(1))
    link = connect()
    link.client.begin_file("f", 5, bytes(16))
    with pytest.raises(UnexpectedResponse, match="response 1603 while opening"):
        link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 5, bytes(32)))
    link = connect()
    _open(link)
    _send_all(link, b"hello", b"d" * 32)
    with pytest.raises(UnexpectedResponse, match="response 1604 while awaiting_digest"):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))


def test_a_file_is_refused_while_busy_or_too_large() -> None:
    link = connect()
    with pytest.raises(
        ValueError, match=exactly(f"the server accepts files up to {MAX_SIZE} bytes")
    ):
        link.client.begin_file("f", MAX_SIZE + 1, bytes(16))
    link.client.begin_file("f", MAX_SIZE, bytes(16))
    with pytest.raises(RuntimeError, match=exactly("cannot send a file while opening")):
        link.client.begin_file("g", 1, bytes(16))
    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    with pytest.raises(
        RuntimeError, match=exactly("cannot send a file while awaiting_server_hello")
    ):
        client.begin_file("f", 1, bytes(16))


def test_abort_sends_902_and_the_ack_ends_in_exhaustion() -> None:
    link = connect()
    file_id = _open(link, size=CHUNK + 1)
    frame = link.client.abort_file()
    assert link.read(frame)[1:] == (RequestCode.CRC_GIVE_UP, rec.encode_file_id(file_id))
    assert state_of(link.client) is v4c.ClientStateV4.AWAITING_ACK
    with pytest.raises(AttemptsExhausted):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(file_id))


# --- STREAM -----------------------------------------------------------------------------


def _stream(link: Link, name: str, data: bytes, digest: bytes, *, sync_now: bool = False) -> int:
    client = link.client
    frame = client.begin_stream_file(name, len(data), b"s" * 16, digest_algorithm=1)
    _cid, code, meta = link.read(frame)
    decoded = rec.decode_file_record(meta)
    assert isinstance(decoded, rec.FileMeta) and decoded.stream and not decoded.directory
    assert code == RequestCode.SEND_FILE
    assert state_of(client) is v4c.ClientStateV4.SENDING
    link.read(client.chunk_record(1, data))
    assert state_of(client) is v4c.ClientStateV4.AWAITING_DIGEST
    _cid, code, plain = link.read(client.commit_if(digest, sync_now=sync_now))
    assert code == rec.COMMIT_IF
    commit = rec.CommitIf.decode(plain)
    assert commit == rec.CommitIf(decoded.file_id, digest, 1, sync_now)
    assert client.ready
    return decoded.file_id


def test_streamed_files_are_answered_in_order() -> None:
    link = connect()
    first = _stream(link, "a", b"aa", b"1" * 32, sync_now=True)
    second = _stream(link, "b", b"bbb", b"2" * 32)
    assert (first, second) == (1, 2)
    assert link.client.unanswered == 2
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    assert (reply.file_id, reply.attempt, reply.start_chunk) == (1, 1, None)
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(2, 1))
    reply = link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 2, b"1" * 32))
    assert (reply.file_id, reply.file_verified, reply.attempt) == (1, False, 1)
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(1, rec.Outcome.STORED))
    assert (reply.file_id, reply.file_verified, reply.resend_file) == (1, True, False)
    assert reply.attempt == 1
    assert link.client.unanswered == 1
    link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(2, 3, b"x" * 32))
    reply = link.answer(
        ResponseCode.ACKNOWLEDGED, rec.encode_outcome(2, rec.Outcome.DIGEST_DIFFERED)
    )
    assert (reply.file_id, reply.file_verified, reply.resend_file) == (2, False, True)
    assert reply.attempt == 1
    assert link.client.unanswered == 0
    assert link.client.ready


def test_a_streamed_answer_before_its_metadata_is_answered_is_unexpected() -> None:
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    with pytest.raises(
        UnexpectedResponse, match=exactly("response 1603 before the file's metadata was answered")
    ):
        link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 2, b"1" * 32))


@pytest.mark.parametrize(
    "received",
    [
        rec.encode_received(2, 2, b"1" * 32, 1),
        rec.encode_received(1, 3, b"1" * 32, 1),
        rec.encode_received(1, 2, b"1" * 32, 2),
    ],
)
def test_a_streamed_1603_for_another_file_is_an_error(received: bytes) -> None:
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    with pytest.raises(ResponseError, match=exactly("1603 is not the oldest streamed file's")):
        link.answer(ResponseCode.FILE_RECEIVED, received)


def test_streamed_outcomes_are_checked() -> None:
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    _stream(link, "b", b"bb", b"2" * 32)
    with pytest.raises(
        ResponseError, match=exactly("the server's answer to a streamed file is not chunk 1")
    ):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 2))
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    with pytest.raises(
        ResponseError, match=exactly("the server's answer to a streamed file is not chunk 1")
    ):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(2, 1))
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    with pytest.raises(UnexpectedResponse, match="about a streamed file"):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(1, rec.Outcome.STORED))
    link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 2, b"1" * 32))
    with pytest.raises(UnexpectedResponse, match="about a streamed file"):
        link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 2, b"1" * 32))
    with pytest.raises(ResponseError, match=exactly("1604 is not the oldest streamed file's")):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(2, rec.Outcome.STORED))
    with pytest.raises(ResponseError, match=exactly("the server's outcome contradicts its digest")):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(1, rec.Outcome.DIGEST_DIFFERED))
    assert link.client.unanswered == 1


def test_a_stored_outcome_for_a_differing_digest_is_a_contradiction() -> None:
    link = connect()
    _stream(link, "a", b"aa", b"1" * 32)
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 2, b"x" * 32))
    with pytest.raises(ResponseError, match=exactly("the server's outcome contradicts its digest")):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(1, rec.Outcome.STORED))


def test_a_folder_is_made_and_counts_in_the_window() -> None:
    link = connect()
    _cid, code, meta = link.read(link.client.begin_folder("d/e\u0301"))
    assert code == RequestCode.SEND_FILE
    decoded = rec.decode_file_record(meta)
    assert decoded == rec.FileMeta(1, 0, bytes(16), "d/é", directory=True)
    assert link.client.unanswered == 1
    assert link.client.ready  # a folder has no data: files may follow at once
    with pytest.raises(
        ResponseError, match=exactly("the server's answer to a folder is not 'made'")
    ):
        link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    link = connect()
    link.client.begin_folder("d")
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 0))
    assert (reply.file_verified, reply.file_id) == (True, 1)
    assert link.client.unanswered == 0


def test_a_streamed_files_digest_algorithm_is_its_own() -> None:
    link = connect()
    sha256 = DigestAlgorithm.SHA256
    frame = link.client.begin_stream_file("a", 2, bytes(16), attempt=2, digest_algorithm=sha256)
    meta = rec.decode_file_record(link.read(frame)[2])
    assert isinstance(meta, rec.FileMeta) and meta.digest_algorithm == sha256
    link.read(link.client.chunk_record(1, b"aa"))
    commit = rec.CommitIf.decode(link.read(link.client.commit_if(b"1" * 32, sync_now=False))[2])
    assert commit.digest_algorithm == sha256
    assert link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1)).attempt == 2
    received = rec.encode_received(1, 2, b"1" * 32, sha256)
    assert link.answer(ResponseCode.FILE_RECEIVED, received).attempt == 2
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_outcome(1, rec.Outcome.STORED))
    assert (reply.file_verified, reply.attempt) == (True, 2)


def test_each_metadata_record_takes_the_next_file_id() -> None:
    link = connect()
    ids: list[rec.FileMeta | rec.FileChunk] = []
    for _ in range(2):
        ids.append(rec.decode_file_record(link.read(link.client.begin_folder("d"))[2]))
    ids.append(
        rec.decode_file_record(link.read(link.client.begin_stream_file("f", 1, bytes(16)))[2])
    )
    assert [meta.file_id for meta in ids] == [1, 2, 3]
    assert link.client.last_file_id == 3
    link = connect()
    assert _open(link, "a") == 1
    _send_all(link, b"hello", b"d" * 32)
    reply = link.answer(ResponseCode.FILE_RECEIVED, rec.encode_received(1, 5, b"d" * 32))
    link.read(reply.send[0])
    assert link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_file_id(1)).file_verified
    assert _open(link, "b") == 2


def test_calls_out_of_turn_are_programming_errors() -> None:
    link = connect()
    with pytest.raises(AssertionError):
        link.client.commit_if(bytes(32), sync_now=True)  # no file
    with pytest.raises(AssertionError):
        link.client.abort_file()  # no file
    link.client.begin_file("f", 5, bytes(16))
    with pytest.raises(AssertionError):
        link.client.chunk_record(1, b"hello")  # before the resume point
    link = connect()
    _open(link)
    link.client.chunk_record(1, b"hello")
    with pytest.raises(AssertionError):
        link.client.commit_if(bytes(32), sync_now=True)  # one at a time: 900, not 903
    link = connect()
    link.client.begin_stream_file("f", 1, bytes(16))
    link.client.chunk_record(1, b"x")
    link.client.commit_if(bytes(32), sync_now=True)
    assert link.client.file_attempts == 0
    with pytest.raises(AssertionError):
        link.client.commit_if(bytes(32), sync_now=True)  # committed already


@pytest.mark.parametrize(
    ("features", "window"),
    [
        (hs.SUPPORTED_FEATURES, rec.WIDE_STREAM_WINDOW),
        (hs.FEATURE_STREAM, rec.STREAM_WINDOW),  # a server or client of the narrow one
    ],
)
def test_the_window_is_full_at_its_size(features: int, window: int) -> None:
    link = connect(features=features)
    for _ in range(window - 1):
        link.read(link.client.begin_folder("d"))
    _stream(link, "last", b"x", b"1" * 32)
    assert link.client.unanswered == window
    with pytest.raises(RuntimeError, match=exactly("the window is full: read answers first")):
        link.client.begin_folder("d")
    with pytest.raises(RuntimeError, match=exactly("the window is full: read answers first")):
        link.client.begin_stream_file("f", 1, bytes(16))
    link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 0))
    link.client.begin_folder("d")


def test_streaming_is_refused_while_busy_or_too_large() -> None:
    link = connect()
    with pytest.raises(
        ValueError, match=exactly(f"the server accepts files up to {MAX_SIZE} bytes")
    ):
        link.client.begin_stream_file("f", MAX_SIZE + 1, bytes(16))
    link.client.begin_stream_file("f", MAX_SIZE, bytes(16), attempt=3)
    assert link.client.file_attempts == 3
    with pytest.raises(RuntimeError, match=exactly("cannot send a file while sending")):
        link.client.begin_stream_file("g", 1, bytes(16))
    with pytest.raises(RuntimeError, match=exactly("cannot send a folder while sending")):
        link.client.begin_folder("g")
    reply = link.answer(ResponseCode.ACKNOWLEDGED, rec.encode_resume(1, 1))
    assert reply.attempt == 3


def test_a_cookie_reply_restarts_with_the_same_ephemeral_key() -> None:
    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    first = client.start()
    ephemeral = client._ephemeral
    assert ephemeral is not None
    cookie = bytes(range(1, hs.COOKIE_REPLY_SIZE + 1))
    reply = client.receive(hs.cookie_reply_header(), cookie)
    assert reply.cookie is True
    (again,) = reply.send
    assert client.offer.cookie == cookie
    assert again[23:55] == first[23:55]  # the same ephemeral public key
    assert again != first
    zeros = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    zeros.start()
    with pytest.raises(hs.HandshakeError, match=exactly("the server's cookie is all zeros")):
        zeros.receive(hs.cookie_reply_header(), bytes(hs.COOKIE_REPLY_SIZE))


def test_a_refused_pin_stops_before_message_3() -> None:
    server = _server()
    stops: list[str] = []

    def refuse(fingerprint: str) -> None:
        stops.append(fingerprint)
        raise PermissionError("not the pinned server")

    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=refuse)
    hello = client.start()
    effects = server.receive(hello[:23], hello[23:], now=0.0)
    (frame,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    with pytest.raises(PermissionError):
        client.receive(frame[:7], frame[7:])
    assert stops == [hs.fingerprint(server.static.public)]
    assert state_of(client) is v4c.ClientStateV4.AWAITING_SERVER_HELLO


def _message_3(client: v4c.ClientSessionV4) -> bytes:
    server = _server()
    hello = client.start()
    effects = server.receive(hello[:23], hello[23:], now=0.0)
    (frame,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    (message3,) = client.receive(frame[:7], frame[7:]).send
    return message3


def test_a_login_carries_no_token() -> None:
    sizes = {}
    for register, token in ((False, b"tok"), (False, b""), (True, b""), (True, b"tok")):
        client = v4c.ClientSessionV4(
            KeyPair.generate(), "a", register=register, check_server=print, token=token
        )
        sizes[register, token] = len(_message_3(client))
    assert sizes[False, b"tok"] == sizes[False, b""] == sizes[True, b""]
    assert sizes[True, b"tok"] == sizes[True, b""] + 3


def test_no_next_key_is_believed_without_its_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    def server_with_next_key() -> v4s.ServerSessionV4:
        return v4s.ServerSessionV4(
            KeyPair.generate(),
            MemoryRegistry(),
            max_file_size=MAX_SIZE,
            next_static=KeyPair.generate(),
        )

    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    assert client.next_server_fingerprint is None
    server = server_with_next_key()
    hello = client.start()
    effects = server.receive(hello[:23], hello[23:], now=0.0)
    (frame,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    client.receive(frame[:7], frame[7:])
    assert server.next_static is not None
    assert client.next_server_fingerprint == hs.fingerprint(server.next_static.public)
    monkeypatch.setattr(v4s, "next_key_proof", lambda *_: bytes(32))
    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    server = server_with_next_key()
    hello = client.start()
    effects = server.receive(hello[:23], hello[23:], now=0.0)
    (frame,) = [e.frame for e in effects if isinstance(e, v4s.SendFrame)]
    with pytest.raises(hs.HandshakeError, match=exactly("the server's next key is not proven")):
        client.receive(frame[:7], frame[7:])
    assert client.next_server_fingerprint is None


def test_without_a_next_key_there_is_no_next_fingerprint() -> None:
    link = connect()
    assert link.client.next_server_fingerprint is None


def test_only_a_whole_cookie_reply_is_a_cookie() -> None:
    client = v4c.ClientSessionV4(KeyPair.generate(), "a", register=True, check_server=print)
    client.start()
    with pytest.raises(ResponseError):  # read as a server hello: it fails to decrypt
        client.receive(hs.cookie_reply_header(), b"\x01" * (hs.COOKIE_REPLY_SIZE - 1))
    assert client.offer.cookie == b""
