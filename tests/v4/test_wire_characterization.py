"""What the version-4 server does at the wire, message by message, against a real server.

A safety net for redesigning the sessions (issue 16): every message and its answer,
every refusal (the answered ones: 1605, 1606, 1607 with each error number the server
can reach; the silent ones: a close and the reason in the log), each timeout, resume,
and a connection cut at each point of an upload. Only the wire and the server's log
are looked at, through ``wire_client.WireV4`` (built on the primitives, not on the
sessions being redesigned).

Error numbers of 1607 that the wire cannot reach here: 4 (registration closed: the
server has no switch for it), 6 (internal: never sent) and 7 (storage: needs a failing
disk, see tests/faults/test_v4_storage_error_mid_upload.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_protocol.codes import REQUEST_HEADER, RequestCode, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import records as rec
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import hello_header
from tests.hostile.helpers import records_of, wait_closed_on_server
from tests.support.processes import ServerProcess
from tests.v4.wire_client import (
    WireV4,
    chunk_plaintext,
    meta_plaintext,
    new_upload_id,
)

MiB = rec.CHUNK
ACK, RECEIVED, ERROR = ResponseCode.ACKNOWLEDGED, ResponseCode.FILE_RECEIVED, 1607


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the rows that need no special limit."""
    base = tmp_path_factory.mktemp("wire4")
    (base / "server").mkdir()
    server = ServerProcess(base / "server" / "data", base / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _data(size: int, seed: int) -> bytes:
    import random  # noqa: PLC0415

    return random.Random(seed).randbytes(size)


def _stored(server: ServerProcess, peer: WireV4, name: str) -> Path:
    return server.data_dir / "v4" / "files" / peer.client_id.hex() / name


def _parts(server: ServerProcess) -> list[Path]:
    return sorted((server.data_dir / "v4" / "partial").glob("*/*.part"))


def _events(server: ServerProcess, peer: WireV4) -> list[dict[str, object]]:
    """The log of ``peer``'s connection, once the server has closed it."""
    wait_closed_on_server(server, peer.local)
    return records_of(server, peer.local)


def _upload(peer: WireV4, file_id: int, name: str, data: bytes) -> tuple[int, bytes]:
    """A whole upload up to the 1603; returns the 1603's code and plaintext."""
    code, plaintext = peer.meta(file_id, len(data), new_upload_id(), name)
    assert (code, plaintext) == (ACK, rec.encode_resume(file_id, 1))
    peer.chunks(file_id, data)
    return peer.response()


# --- every message and its answer ----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MiB, 2 * MiB + 3], ids=["empty", "1B", "1MiB", "2MiB+3"])
def test_an_upload_message_by_message(shared: ServerProcess, size: int) -> None:
    peer = WireV4(shared.address)
    assert peer.hello() == bytes.fromhex("04420674000000")
    assert peer.server_hello is not None
    assert peer.server_hello.max_file_size == 1 << 40 and peer.server_hello.open_registration
    code, plaintext = peer.intent(f"msg{size}", RequestCode.REGISTER)
    assert (code, plaintext) == (ResponseCode.REGISTERED, peer.client_id)
    data = _data(size, size)
    code, plaintext = _upload(peer, 7, "m.bin", data)
    digest = file_digest(data).digest()
    assert (code, plaintext) == (RECEIVED, rec.encode_received(7, size, digest))
    assert peer.verdict(RequestCode.CRC_OK, 7) == (ACK, rec.encode_file_id(7))
    assert _stored(shared, peer, "m.bin").read_bytes() == data
    peer.close()
    events = _events(shared, peer)
    transfers = [e for e in events if e.get("event") == "transfer"]
    assert [t["outcome"] for t in transfers] == ["received", "verified"]
    assert transfers[-1]["bytes"] == size and transfers[-1]["file"] == "m.bin"


def test_login_and_registering_again_under_the_same_name(shared: ServerProcess) -> None:
    key = KeyPair.generate()
    first = WireV4(shared.address, key)
    first.register("again")
    first.close()
    second = WireV4(shared.address, key)
    second.login("again")
    second.close()
    third = WireV4(shared.address, key)
    third.register("again")  # the same key and name: registered again, not refused
    third.close()
    assert "reconnected" in [e.get("event") for e in _events(shared, second)]


def test_several_files_on_one_connection_with_increasing_ids(shared: ServerProcess) -> None:
    peer = WireV4(shared.address)
    peer.register("several")
    for file_id, name in ((1, "a.txt"), (5, "b.txt"), (6, "c.txt")):
        data = _data(100 + file_id, file_id)
        assert _upload(peer, file_id, name, data)[0] == RECEIVED
        assert peer.verdict(RequestCode.CRC_OK, file_id) == (ACK, rec.encode_file_id(file_id))
        assert _stored(shared, peer, name).read_bytes() == data
    peer.close()


def test_retry_give_up_and_abort_are_acknowledged_and_store_nothing(shared: ServerProcess) -> None:
    peer = WireV4(shared.address)
    peer.register("verdicts")
    data = _data(MiB + 10, 3)
    assert _upload(peer, 1, "retry.bin", data)[0] == RECEIVED
    assert peer.verdict(RequestCode.CRC_RETRY, 1) == (ACK, rec.encode_file_id(1))
    assert _upload(peer, 2, "retry.bin", data)[0] == RECEIVED
    assert peer.verdict(RequestCode.CRC_GIVE_UP, 2) == (ACK, rec.encode_file_id(2))
    code, _ = peer.meta(3, len(data), new_upload_id(), "abort.bin")
    assert code == ACK
    peer.chunks(3, data, 1, 1)
    assert peer.verdict(RequestCode.CRC_GIVE_UP, 3) == (ACK, rec.encode_file_id(3))
    assert not _stored(shared, peer, "retry.bin").exists()
    assert not _stored(shared, peer, "abort.bin").exists()
    peer.close()
    outcomes = [e["outcome"] for e in _events(shared, peer) if e.get("event") == "transfer"]
    assert outcomes == ["received", "retried", "received", "gave_up", "aborted"]
    assert not [p for p in _parts(shared) if peer.client_id.hex() in str(p)]


# --- answered refusals ---------------------------------------------------------------


def test_a_taken_name_is_refused_with_1605_then_closed(shared: ServerProcess) -> None:
    owner = WireV4(shared.address)
    owner.register("taken")
    owner.close()
    other = WireV4(shared.address)
    other.hello()
    assert other.intent("taken", RequestCode.REGISTER) == (ResponseCode.REGISTRATION_FAILED, b"")
    assert other.closed_by_server()
    renamed = WireV4(shared.address, owner.key)  # a known key asking for another name
    renamed.hello()
    assert renamed.intent("other", RequestCode.REGISTER)[0] == ResponseCode.REGISTRATION_FAILED
    assert renamed.closed_by_server()
    assert "registration_refused" in [e.get("event") for e in _events(shared, other)]


@pytest.mark.parametrize("known_key", [False, True], ids=["unknown-key", "known-key-other-name"])
def test_an_unknown_login_is_refused_with_1606_then_closed(
    shared: ServerProcess, known_key: bool
) -> None:
    key = KeyPair.generate()
    if known_key:
        owner = WireV4(shared.address, key)
        owner.register(f"known{known_key}")
        owner.close()
    peer = WireV4(shared.address, key)
    peer.hello()
    assert peer.intent("nobody", RequestCode.RECONNECT) == (ResponseCode.RECONNECT_DENIED, b"")
    assert peer.closed_by_server()
    assert "reconnect_denied" in [e.get("event") for e in _events(shared, peer)]


def _error(peer: WireV4) -> tuple[int, str]:
    code, plaintext = peer.response()
    assert code == ERROR
    return rec.decode_error(plaintext)


@pytest.mark.parametrize("name", ["../x", "/a/b", "CON.txt", "", "a\\b", "trail.", "a//b"])
def test_a_bad_file_name_is_1607_error_2_and_the_connection_goes_on(
    shared: ServerProcess, name: str
) -> None:
    peer = WireV4(shared.address)
    peer.register(f"names{abs(hash(name)) % 10**6}")
    peer.request(RequestCode.SEND_FILE, meta_plaintext(1, 10, new_upload_id(), name))
    assert _error(peer)[0] == rec.ErrorCode.BAD_FILE_NAME
    assert _upload(peer, 2, "fine.txt", b"0123456789")[0] == RECEIVED
    peer.close()


def test_a_file_over_the_limit_is_1607_error_3_and_the_connection_goes_on(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--max-file-size-v4", "1000")
    peer = WireV4(server.address)
    peer.hello()
    assert peer.server_hello is not None and peer.server_hello.max_file_size == 1000
    assert peer.intent("limits")[0] == ResponseCode.REGISTERED
    peer.request(RequestCode.SEND_FILE, meta_plaintext(1, 1001, new_upload_id(), "big.bin"))
    assert _error(peer)[0] == rec.ErrorCode.TOO_LARGE
    assert _upload(peer, 2, "small.bin", _data(1000, 1))[0] == RECEIVED
    peer.close()


def test_an_upload_held_by_another_connection_is_1607_error_5_then_closed(
    shared: ServerProcess,
) -> None:
    key, upload_id, data = KeyPair.generate(), new_upload_id(), _data(2 * MiB, 5)
    holder = WireV4(shared.address, key)
    holder.register("busy")
    assert holder.meta(1, len(data), upload_id, "busy.bin")[0] == ACK
    holder.chunks(1, data, 1, 1)
    second = WireV4(shared.address, key)
    second.login("busy")
    second.request(RequestCode.SEND_FILE, meta_plaintext(1, len(data), upload_id, "busy.bin"))
    assert _error(second)[0] == rec.ErrorCode.BUSY
    assert second.closed_by_server()
    holder.chunks(1, data, 2)  # the holder is not disturbed
    assert holder.response()[0] == RECEIVED
    assert holder.verdict(RequestCode.CRC_OK, 1)[0] == ACK
    assert _stored(shared, holder, "busy.bin").read_bytes() == data
    holder.close()


# --- silent refusals: a close, and the reason in the log -----------------------------


def _registered(server: ServerProcess, name: str) -> WireV4:
    peer = WireV4(server.address)
    peer.register(name)
    return peer


def _open_upload(peer: WireV4, size: int = 2 * MiB) -> None:
    assert peer.meta(1, size, new_upload_id(), "open.bin")[0] == ACK


def _flip_last(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])


def _bad_first_header(server: ServerProcess) -> WireV4:
    peer = WireV4(server.address)
    header = bytearray(hello_header())
    header[19:23] = struct.pack("<I", 33)
    peer.send(bytes(header))
    return peer


def _request_before_the_intent(server: ServerProcess) -> WireV4:
    peer = WireV4(server.address)
    peer.hello()
    peer.send(REQUEST_HEADER.pack(bytes(16), 4, RequestCode.SEND_FILE, 100))
    return peer


def _corrupt_message_3(server: ServerProcess) -> WireV4:
    peer = WireV4(server.address)
    peer.hello()
    peer.send(_flip_last(peer.message_3("corrupt3")))
    return peer


def _intent_code_differs_from_its_header(server: ServerProcess) -> WireV4:
    peer = WireV4(server.address)
    peer.hello()
    message = bytearray(peer.message_3("differ", RequestCode.REGISTER))
    message[17:19] = struct.pack("<H", RequestCode.RECONNECT)
    peer.send(bytes(message))
    return peer


def _version_3_header_after_login(server: ServerProcess) -> WireV4:
    peer = _registered(server, "v3inside")
    peer.send(REQUEST_HEADER.pack(peer.client_id, 3, RequestCode.SEND_FILE, 100))
    return peer


def _record_failing_its_tag(server: ServerProcess) -> WireV4:
    peer = _registered(server, "badtag")
    peer.send(_flip_last(peer.record(RequestCode.SEND_FILE, meta_plaintext(1, 5, bytes(16), "t"))))
    return peer


def _record_under_another_client_id(server: ServerProcess) -> WireV4:
    peer = _registered(server, "otherid")
    plaintext = meta_plaintext(1, 5, bytes(16), "t")
    peer.send(peer.record(RequestCode.SEND_FILE, plaintext, client_id=bytes(16)))
    return peer


def _record_header_over_the_limit(server: ServerProcess) -> WireV4:
    peer = _registered(server, "oversize")
    size = rec.MAX_PLAINTEXT + rec.TAG_SIZE + 1
    peer.send(REQUEST_HEADER.pack(peer.client_id, 4, RequestCode.SEND_FILE, size))
    return peer


def _verdict_while_idle(server: ServerProcess) -> WireV4:
    peer = _registered(server, "idleverdict")
    peer.request(RequestCode.CRC_OK, rec.encode_file_id(1))
    return peer


def _chunk_out_of_order(server: ServerProcess) -> WireV4:
    peer = _registered(server, "order")
    _open_upload(peer)
    peer.request(RequestCode.SEND_FILE, chunk_plaintext(1, 2, True, bytes(MiB)))
    return peer


def _chunk_of_the_wrong_size(server: ServerProcess) -> WireV4:
    peer = _registered(server, "wrongsize")
    _open_upload(peer)
    peer.request(RequestCode.SEND_FILE, chunk_plaintext(1, 1, False, bytes(100)))
    return peer


def _final_flag_on_a_middle_chunk(server: ServerProcess) -> WireV4:
    peer = _registered(server, "finality")
    _open_upload(peer)
    peer.request(RequestCode.SEND_FILE, chunk_plaintext(1, 1, True, bytes(MiB)))
    return peer


def _reserved_flags_in_a_chunk(server: ServerProcess) -> WireV4:
    peer = _registered(server, "flags")
    _open_upload(peer)
    plaintext = bytearray(chunk_plaintext(1, 1, False, bytes(MiB)))
    plaintext[8] = 0x80
    peer.request(RequestCode.SEND_FILE, bytes(plaintext))
    return peer


def _metadata_while_an_upload_is_open(server: ServerProcess) -> WireV4:
    peer = _registered(server, "twometa")
    _open_upload(peer)
    peer.request(RequestCode.SEND_FILE, meta_plaintext(2, 5, new_upload_id(), "b.txt"))
    return peer


def _file_id_not_increasing(server: ServerProcess) -> WireV4:
    peer = _registered(server, "sameid")
    assert _upload(peer, 3, "a.txt", b"abc")[0] == RECEIVED
    assert peer.verdict(RequestCode.CRC_OK, 3)[0] == ACK
    peer.request(RequestCode.SEND_FILE, meta_plaintext(3, 3, new_upload_id(), "b.txt"))
    return peer


def _verdict_for_another_file(server: ServerProcess) -> WireV4:
    peer = _registered(server, "otherfile")
    _open_upload(peer)
    peer.request(RequestCode.CRC_GIVE_UP, rec.encode_file_id(9))
    return peer


def _malformed_metadata(server: ServerProcess) -> WireV4:
    peer = _registered(server, "malformed")
    peer.request(RequestCode.SEND_FILE, meta_plaintext(1, 5, bytes(16), "abc")[:-1])
    return peer


SILENT = {
    "bad-first-header": (_bad_first_header, "handshake"),
    "request-before-intent": (_request_before_the_intent, "handshake"),
    "corrupt-message-3": (_corrupt_message_3, "handshake"),
    "intent-code-differs": (_intent_code_differs_from_its_header, "handshake"),
    "version-3-header": (_version_3_header_after_login, "handshake"),
    "bad-tag": (_record_failing_its_tag, "bad_record"),
    "another-client-id": (_record_under_another_client_id, "bad_record"),
    "record-too-large": (_record_header_over_the_limit, "bad_record"),
    "verdict-while-idle": (_verdict_while_idle, "handshake"),
    "chunk-out-of-order": (_chunk_out_of_order, "bad_record"),
    "chunk-wrong-size": (_chunk_of_the_wrong_size, "bad_record"),
    "final-flag-early": (_final_flag_on_a_middle_chunk, "bad_record"),
    "reserved-flags": (_reserved_flags_in_a_chunk, "bad_record"),
    "second-metadata": (_metadata_while_an_upload_is_open, "bad_record"),
    "file-id-reused": (_file_id_not_increasing, "bad_record"),
    "verdict-other-file": (_verdict_for_another_file, "bad_record"),
    "malformed-metadata": (_malformed_metadata, "bad_record"),
}


@pytest.mark.parametrize("case", SILENT)
def test_a_bad_request_closes_without_a_word(shared: ServerProcess, case: str) -> None:
    make, reason = SILENT[case]
    peer = make(shared)
    assert peer.closed_by_server()
    refused = [e for e in _events(shared, peer) if e.get("event") == "connection_refused_v4"]
    assert [e["reason"] for e in refused] == [reason]


# --- timeouts: tiny limits, and the close awaited (no margin) ------------------------


@pytest.mark.parametrize(
    ("limit", "kind"),
    [
        ("--handshake-timeout", "handshake"),
        ("--idle-timeout", "idle"),
        ("--read-timeout", "read"),
        ("--read-timeout", "read-mid-frame"),
    ],
)
def test_a_silent_peer_is_closed_by_each_timeout(
    server_factory: Callable[..., ServerProcess], limit: str, kind: str
) -> None:
    server = server_factory(limit, "0.3")
    peer = WireV4(server.address)
    if kind == "handshake":
        peer.hello()  # and never message 3
    else:
        peer.register("silent")
    if kind.startswith("read"):
        _open_upload(peer)  # the server now waits for data, under the read timeout
    if kind == "read-mid-frame":
        peer.send(peer.record(RequestCode.SEND_FILE, b"x" * 20)[:30])
    assert peer.closed_by_server()
    timeouts = [e for e in _events(server, peer) if e.get("event") == "connection_timeout"]
    assert [e["kind"] for e in timeouts] == [kind.removesuffix("-mid-frame")]
    if kind.startswith("read"):
        assert [e["outcome"] for e in _events(server, peer) if e.get("event") == "transfer"] == [
            "aborted"
        ]


# --- resume, and cuts at every point of an upload ------------------------------------

SIZE = 3 * MiB + 5  # four chunks
CUTS = {
    # where the first connection stops: (what it sends, the chunk a resume starts at)
    "after-hello": 1,
    "after-intent": 1,
    "after-metadata": 1,
    "inside-chunk-1": 1,
    "after-chunk-1": 2,
    "inside-header-2": 2,
    "after-chunk-3": 4,
    "inside-final-chunk": 4,
    "after-final-chunk": 4,
    "after-1603": 4,
}


def _first_connection(server: ServerProcess, key: KeyPair, cut: str, upload_id: bytes) -> WireV4:
    data = _data(SIZE, 11)
    peer = WireV4(server.address, key)
    peer.hello()
    if cut == "after-hello":
        return peer
    assert peer.intent(f"cut {cut}", RequestCode.REGISTER)[0] == ResponseCode.REGISTERED
    if cut == "after-intent":
        return peer
    assert peer.meta(1, SIZE, upload_id, "cut.bin") == (ACK, rec.encode_resume(1, 1))
    if cut == "after-metadata":
        return peer
    if cut == "inside-chunk-1":
        peer.send(peer.record(RequestCode.SEND_FILE, chunk_plaintext(1, 1, False, data[:MiB]))[:-9])
        return peer
    stop = {"after-chunk-1": 1, "inside-header-2": 1, "after-chunk-3": 3}.get(cut, 4)
    stop = 3 if cut == "inside-final-chunk" else stop
    peer.chunks(1, data, 1, stop)
    if cut == "inside-header-2":
        peer.send(
            peer.record(RequestCode.SEND_FILE, chunk_plaintext(1, 2, False, data[MiB : 2 * MiB]))[
                :10
            ]
        )
    if cut == "inside-final-chunk":
        final = chunk_plaintext(1, 4, True, data[3 * MiB :])
        peer.send(peer.record(RequestCode.SEND_FILE, final)[:-1])
    if cut == "after-1603":
        assert peer.response()[0] == RECEIVED
    return peer


@pytest.mark.parametrize("cut", CUTS)
def test_a_cut_upload_resumes_where_the_server_stopped(shared: ServerProcess, cut: str) -> None:
    key, upload_id, data = KeyPair.generate(), new_upload_id(), _data(SIZE, 11)
    first = _first_connection(shared, key, cut, upload_id)
    # Whatever the server still reads before the close must be in before it is cut.
    first.sock.shutdown(2)
    first.close()
    first_events = _events(shared, first)
    registered = any(e.get("event") == "registered" for e in first_events)
    second = WireV4(shared.address, key)
    if registered:
        second.login(f"cut {cut}")
    else:
        second.register(f"cut {cut}")
    start = CUTS[cut]
    assert second.meta(1, SIZE, upload_id, "cut.bin") == (ACK, rec.encode_resume(1, start))
    second.chunks(1, data, start)
    code, plaintext = second.response()
    assert (code, plaintext) == (RECEIVED, rec.encode_received(1, SIZE, file_digest(data).digest()))
    assert second.verdict(RequestCode.CRC_OK, 1)[0] == ACK
    assert _stored(shared, second, "cut.bin").read_bytes() == data
    second.close()
    resumed = [e for e in _events(shared, second) if e.get("event") == "resumed"]
    assert [(e["chunk"], e["of"]) for e in resumed] == ([(start, 4)] if start > 1 else [])
    lost = [e["outcome"] for e in first_events if e.get("event") == "transfer"]
    opened = cut not in ("after-hello", "after-intent")
    assert lost[-1:] == (["aborted"] if opened else [])
