"""``ServerSession`` (version 3), event by event: the exact effects, messages, notices and
registry writes that the session tests over memory links do not look at. Written for the
mutation survivors of ``eft_protocol.server_session`` (docs/TESTING.md, third round)."""

from __future__ import annotations

from eft_protocol import crypto, errors
from eft_protocol import server_session as ss
from eft_protocol.cksum import cksum
from eft_protocol.codes import RequestCode
from eft_protocol.notices import ClientRegistered, NameRefused, StorageFailure, Transfer
from eft_protocol.parser import (
    PacketContent,
    PacketFinished,
    PacketStarted,
    RequestEvent,
    RequestReceived,
    RequestRejected,
)
from eft_protocol.registry import ClientRecord, MemoryRegistry
from eft_protocol.wire import (
    CrcGiveUpRequest,
    CrcOkRequest,
    CrcRetryRequest,
    PacketHeader,
    PublicKeyRequest,
    ReconnectRequest,
    RegisterRequest,
    RequestHeader,
)
from tests.hostile.helpers import shared_key
from tests.protocol.test_parser_fuzz import CLIENT_ID, KNOWN_ID, _randfunc, _registry, _server

FILE = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 784 of ciphertext
NAME = "f.bin"


def _keyed(now: float = 5.0) -> ss.ServerSession:
    """A session whose client ("rita", already known) has reconnected at ``now``."""
    session = _server()
    session.handle(RequestReceived(ReconnectRequest(KNOWN_ID, "rita")), now)
    assert session.has_key
    return session


def _packets(session: ss.ServerSession, size: int, *, orig: int = len(FILE), start: int = 1):
    assert session._aes_key is not None
    cipher = crypto.encrypt_file_bytes(session._aes_key, FILE)
    pieces = [cipher[i : i + size] for i in range(0, len(cipher), size)]
    total = len(pieces)
    for number, piece in enumerate(pieces, start=start):
        header = PacketHeader(KNOWN_ID, len(cipher), orig, number, total, NAME)
        yield [PacketStarted(header, len(piece)), PacketContent(piece), PacketFinished()]


def _feed(session: ss.ServerSession, events: list[RequestEvent], now: float) -> list[ss.Effect]:
    """Handle each event; written data is copied at once (it is a view of a reused buffer)."""
    effects: list[ss.Effect] = []
    for event in events:
        for effect in session.handle(event, now):
            copied = isinstance(effect, ss.WriteFile)
            effects.append(ss.WriteFile(bytes(effect.data)) if copied else effect)
    return effects


def _upload(session: ss.ServerSession, now: float, size: int = 256, **kw: int) -> list[ss.Effect]:
    return _feed(session, [e for packet in _packets(session, size, **kw) for e in packet], now)


def _rejected(effects: list[ss.Effect]) -> ss.Rejected:
    (rejected,) = [e for e in effects if isinstance(e, ss.Rejected)]
    return rejected


def _transfers(effects: list[ss.Effect]) -> list[dict[str, object]]:
    return [dict(e.fields) for e in effects if isinstance(e, Transfer)]


# --- registration and keys ------------------------------------------------------------


def test_an_unfinished_registration_expires_only_after_the_limit() -> None:
    def session_at(now: float) -> list[ss.Effect]:
        registry = MemoryRegistry()
        registry.save_client(ClientRecord(KNOWN_ID, "ann", 1000.0))
        session = ss.ServerSession(registry, limits=ss.ServerLimits(unfinished_registration=60.0))
        return session.handle(RequestReceived(RegisterRequest(bytes(16), "ann")), now)

    for now in (1000.0, 1060.0):
        assert session_at(now)[0] == NameRefused({"name": "ann"})
    assert not isinstance(session_at(1060.5)[0], NameRefused)


def test_a_new_client_id_already_taken_is_drawn_again() -> None:
    ids = iter([KNOWN_ID, CLIENT_ID])
    session = ss.ServerSession(_registry(), new_client_id=lambda: next(ids))
    effects = session.handle(RequestReceived(RegisterRequest(bytes(16), "newcomer")), 1.0)
    assert isinstance(effects[-1], ss.Send)
    assert effects[-1].response.client_id == CLIENT_ID  # type: ignore[attr-defined]
    assert session.client_id == CLIENT_ID


class _Gate(MemoryRegistry):
    """A registry with a policy: it refuses the name "shut" and remembers what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, bytes, int, float, bytes]] = []

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        self.asked.append((name, client_id, version, now, token))
        return "closed" if name == "shut" else None


def test_the_registry_policy_is_asked_with_everything_and_its_refusal_logged() -> None:
    gate = _Gate()
    session = ss.ServerSession(gate, new_client_id=lambda: CLIENT_ID)
    request = RegisterRequest(bytes(16), "shut", token=b"invite")
    refused, sent = session.handle(RequestReceived(request), 4.0)
    assert gate.asked == [("shut", CLIENT_ID, 3, 4.0, b"invite")]
    assert refused == NameRefused({"name": "shut", "reason": "closed"})
    assert isinstance(sent, ss.Send) and int(sent.response.code) == 1601
    assert session.state is ss.State.IDLE
    registered, _ = session.handle(RequestReceived(RegisterRequest(bytes(16), "open")), 5.0)
    assert registered == ClientRegistered({"client_id": CLIENT_ID.hex()})


def test_a_request_out_of_turn_says_which_and_in_what_state() -> None:
    rejected = _rejected(_keyed().handle(RequestReceived(CrcOkRequest(KNOWN_ID, NAME)), 1.0))
    assert str(rejected.error) == "request 900 is not valid in state ready"
    assert rejected.request_code == RequestCode.CRC_OK


def test_a_request_inside_a_failed_attempt_first_answers_the_attempt() -> None:
    session = _keyed()
    first, *_ = _packets(session, 256)
    _feed(session, first, 1.0)
    session.storage_failed("disk_full")
    effects = session.handle(RequestReceived(CrcOkRequest(KNOWN_ID, NAME)), 1.0)
    assert [type(e.error) for e in effects if isinstance(e, ss.Rejected)] == [
        errors.StorageFailed,
        errors.OutOfOrder,
    ]
    assert [e.request_code for e in effects if isinstance(e, ss.Rejected)] == [828, 900]


def test_a_crc_retry_is_not_answered_by_default() -> None:
    session = ss.ServerSession(_registry(), randfunc=_randfunc())
    session.handle(RequestReceived(ReconnectRequest(KNOWN_ID, "rita")), 1.0)
    _upload(session, 2.0)
    effects = session.handle(RequestReceived(CrcRetryRequest(KNOWN_ID, NAME)), 3.0)
    assert not [e for e in effects if isinstance(e, ss.Send)]


def _registered(now: float = 1.0) -> ss.ServerSession:
    session = _server()
    session.handle(RequestReceived(RegisterRequest(bytes(16), "newcomer")), now)
    return session


def _key_request(client_id: bytes = CLIENT_ID, name: str = "newcomer") -> RequestReceived:
    der = crypto.public_key_der(shared_key())
    return RequestReceived(PublicKeyRequest(client_id, name, der))


def test_the_key_exchange_saves_the_key_and_the_time_and_uses_the_given_randomness() -> None:
    first, second = _registered(), _registered()
    sent = first.handle(_key_request(), 7.0)[-1]
    assert sent == second.handle(_key_request(), 7.0)[-1]  # the same pinned randomness
    record = first.registry.client_by_id(CLIENT_ID)
    assert record is not None and record.last_seen == 7.0
    assert record.aes_key is not None and record.aes_key == first._aes_key


def test_a_reconnect_saves_the_key_and_the_time_and_uses_the_given_randomness() -> None:
    first, second = _server(), _server()
    sent = [
        s.handle(RequestReceived(ReconnectRequest(KNOWN_ID, "rita")), 9.0)[-1]
        for s in (
            first,
            second,
        )
    ]
    assert isinstance(sent[0], ss.Send) and sent[0] == sent[1]  # the same pinned randomness
    record = first.registry.client_by_id(KNOWN_ID)
    assert record is not None and record.last_seen == 9.0
    assert record.aes_key is not None and record.aes_key == first._aes_key


def test_key_request_refusals_say_why() -> None:
    cases = [
        (
            _key_request(KNOWN_ID),
            errors.ClientIdMismatch,
            "the header's client id is not this connection's",
        ),
        (
            _key_request(name="other"),
            errors.NameMismatch,
            "826 names a different client than its id",
        ),
    ]
    for event, kind, message in cases:
        rejected = _rejected(_registered().handle(event, 2.0))
        assert type(rejected.error) is kind and str(rejected.error) == message
        assert rejected.request_code == RequestCode.SEND_PUBLIC_KEY

    session = _registered()
    session.registry.forget_client(CLIENT_ID)
    rejected = _rejected(session.handle(_key_request(), 2.0))
    assert str(rejected.error) == "826 from a client id that never registered"

    session = _registered()
    session.registry.save_client(ClientRecord(CLIENT_ID, "newcomer", 1.0, b"key"))
    rejected = _rejected(session.handle(_key_request(), 2.0))
    assert str(rejected.error) == "this client already sent its public key"


# --- a file, packet by packet -------------------------------------------------------


def test_a_whole_upload_begins_writes_and_commits_the_right_file() -> None:
    session = _keyed(5.0)
    effects = _upload(session, 8.0)
    assert effects[0] == ss.BeginFile(KNOWN_ID, NAME)
    assert b"".join(bytes(e.data) for e in effects if isinstance(e, ss.WriteFile)) == FILE
    (received,) = _transfers(effects)
    assert received["outcome"] == "received" and received["duration"] == 0.0
    effects = session.handle(RequestReceived(CrcOkRequest(KNOWN_ID, NAME)), 11.0)
    assert effects[0] == ss.CommitFile(KNOWN_ID, NAME, len(FILE), cksum(FILE))
    assert _transfers(effects)[0]["duration"] == 3.0
    assert session.connection_lost() == []  # the upload is over


def test_a_crc_give_up_discards_and_logs_the_time() -> None:
    session = _keyed()
    _upload(session, 8.0)
    effects = session.handle(RequestReceived(CrcGiveUpRequest(KNOWN_ID, NAME)), 10.5)
    assert effects[0] == ss.DiscardFile()
    assert _transfers(effects)[0]["outcome"] == "gave_up"
    assert _transfers(effects)[0]["duration"] == 2.5
    assert session.connection_lost() == []


def test_a_crc_retry_is_answered_only_when_asked_and_the_resend_is_attempt_two() -> None:
    for answer in (False, True):
        session = _keyed()
        session.answer_crc_retry = answer
        _upload(session, 8.0)
        effects = session.handle(RequestReceived(CrcRetryRequest(KNOWN_ID, NAME)), 9.0)
        assert effects[0] == ss.DiscardFile()
        assert _transfers(effects)[0]["outcome"] == "retried"
        assert isinstance(effects[-1], ss.Send) is answer
        resent = _upload(session, 9.0)
        assert _transfers(resent)[0]["attempt"] == 2


def test_a_verdict_for_another_file_is_out_of_order() -> None:
    session = _keyed()
    _upload(session, 8.0)
    rejected = _rejected(session.handle(RequestReceived(CrcOkRequest(KNOWN_ID, "x.bin")), 9.0))
    assert str(rejected.error) == "verdict for 'x.bin', but 'f.bin' was sent"


def test_a_file_must_start_at_packet_one_or_zero_and_have_packets() -> None:
    for number, total in ((3, 3), (2, 2)):
        session = _keyed()
        header = PacketHeader(KNOWN_ID, 32, 20, number, total, NAME)
        rejected = _rejected(_feed(session, [PacketStarted(header, 32), PacketFinished()], 1.0))
        assert str(rejected.error) == (
            f"a file must start at packet 1 (or 0), not {number} of {total}"
        )
        assert rejected.request_code == RequestCode.SEND_FILE


def _second_packet_refused(**changes: int) -> tuple[list[ss.Effect], ss.ServerSession]:
    session = _keyed()
    first, second, *_ = _packets(session, 256)
    _feed(session, first, 1.0)
    header = second[0].packet  # type: ignore[attr-defined]
    fields = {
        "client_id": header.client_id,
        "content_size": header.content_size,
        "orig_file_size": header.orig_file_size,
        "packet_number": header.packet_number,
        "total_packets": header.total_packets,
        "file_name": header.file_name,
        **changes,
    }
    return session.handle(PacketStarted(PacketHeader(**fields), 256), 1.0), session


def test_a_packet_that_changes_the_attempt_is_refused_and_logged() -> None:
    cases = [
        ({"total_packets": 5}, "total packets changed from 4 to 5"),
        ({"packet_number": 3}, "packet 3 arrived, expected 2"),
        ({"content_size": 800}, "the file's sizes changed between packets"),
        ({"orig_file_size": 771}, "the file's sizes changed between packets"),
    ]
    for changes, message in cases:
        effects, session = _second_packet_refused(**changes)
        assert effects[0] == ss.DiscardFile()
        (error,) = _transfers(effects)
        assert error["outcome"] == "error" and error["reason"] == "bad_packet", error
        # the rest of the attempt is dropped; one 1607 after its last packet
        assert _feed(session, [PacketContent(bytes(256)), PacketFinished()], 1.0) == []
        header = PacketHeader(KNOWN_ID, 784, len(FILE), 4, 4, NAME)
        tail = [PacketStarted(header, 16), PacketContent(bytes(16)), PacketFinished()]
        skipped = PacketHeader(KNOWN_ID, 784, len(FILE), 3, 4, NAME)
        assert _feed(session, [PacketStarted(skipped, 256), PacketFinished()], 1.0) == []
        rejected = _rejected(_feed(session, tail, 1.0))
        assert str(rejected.error) == message
        assert rejected.request_code == RequestCode.SEND_FILE
        later = session.storage_failed("disk_full")  # no attempt is open any more
        assert isinstance(later[-1], ss.Rejected) and later[-1].request_code is None


def test_after_a_refused_attempt_the_same_file_starts_afresh() -> None:
    _, session = _second_packet_refused(total_packets=5)
    skipped = PacketHeader(KNOWN_ID, 784, len(FILE), 5, 5, NAME)
    _feed(session, [PacketStarted(skipped, 0), PacketFinished()], 1.0)
    assert session.state is ss.State.READY
    assert _transfers(_upload(session, 2.0))[0]["attempt"] == 1


def test_sizes_that_do_not_add_up_fail_at_the_last_packet_in_one_answer() -> None:
    session = _keyed()
    effects = _upload(session, 1.0, orig=770)  # pads to the same 784 bytes
    assert effects[-3] == ss.DiscardFile()
    assert _transfers(effects)[-1]["outcome"] == "error"
    rejected = effects[-1]
    assert isinstance(rejected, ss.Rejected)
    assert str(rejected.error) == "received 784 bytes of ciphertext, declared 784"
    assert rejected.request_code == RequestCode.SEND_FILE


def test_more_ciphertext_than_declared_is_refused_with_the_limit() -> None:
    session = _keyed()
    header = PacketHeader(KNOWN_ID, 32, 20, 1, 1, NAME)
    effects = _feed(session, [PacketStarted(header, 48), PacketContent(bytes(48))], 1.0)
    assert str(_rejected(effects + session.handle(PacketFinished(), 1.0)).error) == (
        "more than the 32 bytes of ciphertext declared"
    )


def test_a_packet_larger_than_the_buffer_is_decrypted_into_a_bigger_one() -> None:
    session = _keyed()
    session.limits = ss.ServerLimits(max_file_size=1 << 20)
    data = bytes(100_000)
    assert session._aes_key is not None
    cipher = crypto.encrypt_file_bytes(session._aes_key, data)
    header = PacketHeader(KNOWN_ID, len(cipher), len(data), 1, 1, NAME)
    effects = _feed(
        session, [PacketStarted(header, len(cipher)), PacketContent(cipher), PacketFinished()], 1.0
    )
    assert b"".join(bytes(e.data) for e in effects if isinstance(e, ss.WriteFile)) == data


def test_a_shared_buffer_of_exactly_the_size_needed_is_used_as_it_is() -> None:
    buffer = bytearray(784 + 32)
    session = ss.ServerSession(_registry(), randfunc=_randfunc(), plaintext_buffer=buffer)
    session.handle(RequestReceived(ReconnectRequest(KNOWN_ID, "rita")), 1.0)
    (packet,) = _packets(session, 784)
    session.handle(packet[0], 1.0)
    (write,) = session.handle(packet[1], 1.0)
    assert isinstance(write, ss.WriteFile)
    assert isinstance(write.data, memoryview) and write.data.obj is buffer


# --- storage failures and rejected packets -----------------------------------------


def test_a_storage_failure_mid_attempt_is_answered_after_its_last_packet() -> None:
    session = _keyed()
    first, *rest = _packets(session, 256)
    _feed(session, first[:2], 1.0)
    effects = session.storage_failed("disk_full", detail="ENOSPC")
    assert effects == [
        ss.DiscardFile(),
        StorageFailure({"reason": "disk_full", "detail": "ENOSPC"}),
    ]
    assert session.handle(first[2], 1.0) == []
    for packet in rest[:-1]:
        assert _feed(session, packet, 1.0) == []
    (rejected,) = _feed(session, rest[-1], 1.0)
    assert rejected == ss.Rejected(rejected.error, RequestCode.SEND_FILE)
    assert isinstance(rejected.error, errors.StorageFailed)
    assert str(rejected.error) == "disk_full"
    assert session.state is ss.State.READY
    later = session.storage_failed("io")  # the attempt is closed: answered at once
    assert isinstance(later[-1], ss.Rejected) and later[-1].request_code is None


def test_a_storage_failure_between_files_is_answered_at_once() -> None:
    session = _keyed()
    _upload(session, 1.0)
    session.handle(RequestReceived(CrcOkRequest(KNOWN_ID, NAME)), 1.0)
    effects = session.storage_failed("io")
    assert isinstance(effects[-1], ss.Rejected) and effects[-1].request_code is None
    assert session.state is ss.State.READY
    assert session.connection_lost() == []

    unkeyed = ss.ServerSession(MemoryRegistry())
    unkeyed.storage_failed("io")
    assert unkeyed.state is ss.State.IDLE


def _rejected_packet(numbers: tuple[int, int] | None) -> RequestRejected:
    header = RequestHeader(KNOWN_ID, 3, RequestCode.SEND_FILE, 0)
    return RequestRejected(header, errors.BadPacket("bad name"), numbers)


def test_a_failed_attempt_is_answered_when_its_last_rejected_packet_is_in() -> None:
    session = _keyed()
    first, *_ = _packets(session, 256)
    _feed(session, first, 1.0)
    session.storage_failed("disk_full")
    assert session.handle(_rejected_packet((2, 4)), 1.0) == []
    assert session.handle(_rejected_packet((3, 4)), 1.0) == []
    (rejected,) = session.handle(_rejected_packet((4, 4)), 1.0)
    assert str(rejected.error) == "disk_full"

    session = _keyed()
    _feed(session, first, 1.0)
    session.storage_failed("disk_full")
    (rejected,) = session.handle(_rejected_packet(None), 1.0)  # numbers unknown: last
    assert str(rejected.error) == "disk_full"


def test_a_zero_based_failed_attempt_is_answered_after_its_last_packet() -> None:
    session = _keyed()
    packets = list(_packets(session, 512, start=0))  # packets 0 and 1 of 2
    assert len(packets) == 2
    _feed(session, packets[0][:2], 1.0)
    session.storage_failed("disk_full")
    assert session.handle(packets[0][2], 1.0) == []
    assert _feed(session, packets[1][:2], 1.0) == []
    (rejected,) = session.handle(packets[1][2], 1.0)
    assert str(rejected.error) == "disk_full"


def test_a_rejected_only_packet_zero_is_answered_at_once() -> None:
    session = _keyed()
    (rejected,) = session.handle(_rejected_packet((0, 1)), 1.0)
    assert str(rejected.error) == "bad name"
    assert rejected.request_code == RequestCode.SEND_FILE
    session = _keyed()
    assert session.handle(_rejected_packet((0, 2)), 1.0) == []


def test_a_bad_request_is_rejected_with_its_own_code() -> None:
    session = _keyed()
    rejected = _rejected(session.handle(RequestReceived(CrcOkRequest(KNOWN_ID, NAME)), 1.0))
    assert rejected.request_code == RequestCode.CRC_OK


def _retried(now: float = 1.0) -> ss.ServerSession:
    session = _keyed()
    _upload(session, now)
    session.handle(RequestReceived(CrcRetryRequest(KNOWN_ID, NAME)), now)
    assert session.state is ss.State.AWAITING_RESEND
    return session


def test_a_bad_first_packet_of_a_resend_keeps_the_upload_for_the_next_try() -> None:
    session = _retried()
    header = PacketHeader(KNOWN_ID, 784, len(FILE), 3, 3, NAME)  # must start at 1
    effects = _feed(session, [PacketStarted(header, 256), PacketFinished()], 2.0)
    assert str(_rejected(effects).error) == "a file must start at packet 1 (or 0), not 3 of 3"
    assert session.state is ss.State.AWAITING_RESEND
    assert _transfers(_upload(session, 3.0))[0]["attempt"] == 2


def test_a_failed_attempt_leaves_nothing_to_abort() -> None:
    _, session = _second_packet_refused(total_packets=5)
    skipped = PacketHeader(KNOWN_ID, 784, len(FILE), 5, 5, NAME)
    _feed(session, [PacketStarted(skipped, 0), PacketFinished()], 1.0)
    assert session.state is ss.State.READY
    assert session.connection_lost() == []


def test_a_resend_under_another_name_is_a_new_upload() -> None:
    session = _retried()
    assert session._aes_key is not None
    cipher = crypto.encrypt_file_bytes(session._aes_key, FILE)
    header = PacketHeader(KNOWN_ID, len(cipher), len(FILE), 1, 1, "g.bin")
    events = [PacketStarted(header, len(cipher)), PacketContent(cipher), PacketFinished()]
    effects = _feed(session, events, 2.0)
    assert effects[0] == ss.BeginFile(KNOWN_ID, "g.bin")
    (received,) = _transfers(effects)
    assert received["file"] == "g.bin" and received["attempt"] == 1


def test_a_verdict_inside_a_failed_resend_answers_both() -> None:
    session = _retried()
    header = PacketHeader(KNOWN_ID, 784, len(FILE), 2, 3, NAME)  # not the last: pending
    assert _feed(session, [PacketStarted(header, 256), PacketFinished()], 2.0) == []
    effects = session.handle(RequestReceived(CrcGiveUpRequest(KNOWN_ID, NAME)), 3.0)
    assert [type(e) for e in effects] == [ss.Rejected, ss.DiscardFile, Transfer, ss.Send]
    assert str(_rejected(effects).error) == "a file must start at packet 1 (or 0), not 2 of 3"
