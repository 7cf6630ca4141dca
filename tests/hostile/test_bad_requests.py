"""Every bad input of the issue, one row each, over a real socket to a real server.

For each row the harness:

1. starts a real ``eft-client`` sending 2 MiB and pauses it mid-upload (SIGSTOP), so
   the bad input arrives while that transfer is open on the server;
2. opens a raw connection, brings it to the row's stage (nothing, registered, or a full
   key exchange) and sends the row's bytes;
3. checks the answer: one 1607 and the connection still usable (a probe request gets
   its own normal answer next, so no second answer was queued), or 1607 and the
   connection closed when the framing can no longer be trusted, or the spec's normal
   answer (1606, or a file stored under its base name) when the input is not an error;
4. checks the server logged ``request_rejected`` with the row's reason for this peer,
   and that ``eft_protocol_errors_total{reason=...}`` went up by exactly one;
5. resumes the real client: it must finish and its file be byte-identical;
6. checks that nothing was written outside the data directory, nothing for the bad
   request under ``files/``, and no temporary file is left.
"""

from __future__ import annotations

import random
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from Crypto.Cipher import AES

from eft_protocol.cksum import cksum
from eft_protocol.wire import (
    Acknowledged,
    FileReceived,
    ReconnectDenied,
    ServerError,
)
from tests.hostile.conftest import Hostile
from tests.hostile.helpers import (
    GoodClient,
    Metrics,
    MiB,
    Peer,
    changed,
    der_with_exponent_3,
    der_with_exponent_65537,
    encrypted,
    field255,
    header,
    packet,
    part_files,
    public_der,
    rejections_of,
    request,
    tree,
    wait_closed_on_server,
)
from tests.support.processes import write_random_file

FRESH, REGISTERED, READY = "fresh", "registered", "ready"
#: Expected answers.
ERROR = "1607, connection kept"
CLOSED = "1607, connection closed"
DENIED = "1606"
STORED = "stored under its base name"

STORED_CONTENT = b"a file whose name was a path\n"


@dataclass
class Context:
    peer: Peer
    hostile: Hostile
    name: str  # the peer's user name

    @property
    def cid(self) -> bytes:
        return self.peer.client_id

    @property
    def key(self) -> bytes:
        return self.peer.aes_key


Act = Callable[[Context], None]


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    act: Act
    expect: str
    reason: str | None = None
    stored_as: str | None = None


# --- acts -------------------------------------------------------------------------


def raw(frame: bytes) -> Act:
    return lambda ctx: ctx.peer.send(frame)


def with_id(build: Callable[[bytes], bytes]) -> Act:
    return lambda ctx: ctx.peer.send(build(ctx.cid))


def key_request(der_of: Callable[[], bytes]) -> Act:
    def act(ctx: Context) -> None:
        ctx.peer.send(request(826, field255(ctx.name.encode()) + der_of(), ctx.cid))

    return act


def another_peer(ctx: Context, suffix: str) -> Peer:
    other = Peer(ctx.hostile.server.address)
    other.handshake(f"{ctx.name}-{suffix}")
    return other


def key_for_a_client_that_has_one(ctx: Context) -> None:
    owner = another_peer(ctx, "owner")
    ctx.peer.send(
        request(826, field255(owner.session.name.encode()) + public_der(), owner.client_id)
    )  # type: ignore[union-attr]
    owner.close()


def reconnect_with_a_known_id_and_another_name(ctx: Context) -> None:
    owner = another_peer(ctx, "owner")
    ctx.peer.send(request(827, field255(b"impostor"), owner.client_id))
    owner.close()


def eof_mid_frame(ctx: Context) -> None:
    ctx.peer.send(header(825, 255) + b"half a na")
    ctx.peer.sock.shutdown(socket.SHUT_WR)


PLAIN3 = bytes(range(40))  # 48 bytes of ciphertext: three packets of 16


def three_packets(numbers: list[tuple[int, int]], name: bytes = b"three.bin") -> Act:
    """Packets of one 48-byte ciphertext; ``numbers`` gives each (number, total)."""

    def act(ctx: Context) -> None:
        cipher = encrypted(ctx.key, PLAIN3)
        frames = []
        for number, total in numbers:
            index = min(max(number, 1), 3) - 1
            content = cipher[16 * index : 16 * index + 16]
            frames.append(
                packet(
                    ctx.cid,
                    name,
                    content,
                    number=number,
                    total_packets=total,
                    content_size=48,
                    orig_size=40,
                )
            )
        ctx.peer.send(*frames)

    return act


def more_content_than_declared(ctx: Context) -> None:
    content = encrypted(ctx.key, b"twenty bytes of text")  # 32 bytes
    ctx.peer.send(packet(ctx.cid, b"over.bin", content, content_size=16, orig_size=5))


def less_content_than_declared(ctx: Context) -> None:
    content = encrypted(ctx.key, b"twenty bytes of text")  # 32 bytes, valid padding
    ctx.peer.send(packet(ctx.cid, b"under.bin", content, content_size=48, orig_size=40))


def bad_padding(ctx: Context) -> None:
    # One block of zeros encrypted without padding: it decrypts to a 0 pad byte.
    content = AES.new(ctx.key, AES.MODE_CBC, iv=bytes(16)).encrypt(bytes(16))
    ctx.peer.send(packet(ctx.cid, b"padding.bin", content, content_size=16, orig_size=0))


def ragged_ciphertext(ctx: Context) -> None:
    ctx.peer.send(packet(ctx.cid, b"ragged.bin", b"0123456789", content_size=16, orig_size=0))


def over_max_file_size(ctx: Context) -> None:
    orig = 32 * MiB  # the table's server takes 16 MiB at most
    content = encrypted(ctx.key, b"the first bytes")
    ctx.peer.send(
        packet(
            ctx.cid,
            b"huge.bin",
            content,
            content_size=orig + 16,
            orig_size=orig,
            total_packets=2048,
        )
    )
    # ...and the last packet, so the attempt is over and gets its one answer.
    ctx.peer.send(
        packet(
            ctx.cid,
            b"huge.bin",
            content,
            content_size=orig + 16,
            orig_size=orig,
            number=2048,
            total_packets=2048,
        )
    )


def too_many_attempts(ctx: Context) -> None:
    """Four attempts answered 1603, each refused by the client (901); then a fifth."""
    data = b"again and again"
    for _ in range(4):
        ctx.peer.send(packet(ctx.cid, b"again.txt", encrypted(ctx.key, data), orig_size=len(data)))
        assert isinstance(ctx.peer.receive(), FileReceived)
        ctx.peer.send(request(901, field255(b"again.txt"), ctx.cid))
    ctx.peer.send(packet(ctx.cid, b"again.txt", encrypted(ctx.key, data), orig_size=len(data)))


def named_file(name: bytes) -> Act:
    def act(ctx: Context) -> None:
        content = encrypted(ctx.key, STORED_CONTENT)
        ctx.peer.send(packet(ctx.cid, name, content, orig_size=len(STORED_CONTENT)))

    return act


def outside_name(relative: str) -> Callable[[Context], bytes]:
    return lambda ctx: str(ctx.hostile.outside / relative).encode()


def named_file_at(make_name: Callable[[Context], bytes]) -> Act:
    return lambda ctx: named_file(make_name(ctx))(ctx)


GARBAGE_KEY = random.Random(160).randbytes(160)
RANDOM_ID = random.Random(16).randbytes(16)


# --- the table ----------------------------------------------------------------------

CASES = [
    # framing: the header cannot be trusted, so the connection is closed after the 1607
    Case(
        "version_2_first_frame",
        FRESH,
        raw(header(825, 255, version=2) + field255(b"x")),
        CLOSED,
        "bad_version",
    ),
    Case(
        "version_255_mid_session",
        READY,
        with_id(lambda c: request(900, field255(b"f"), c, version=255)),
        CLOSED,
        "bad_version",
    ),
    Case("unknown_code_too_big_to_skip", FRESH, raw(header(999, MiB)), CLOSED, "payload_too_large"),
    Case(
        "register_payload_4_gib", FRESH, raw(header(825, 0xFFFFFFFF)), CLOSED, "payload_too_large"
    ),
    Case(
        "packet_over_max_packet_payload",
        READY,
        with_id(lambda c: header(828, 2 * MiB, c) + bytes(267)),
        CLOSED,
        "payload_too_large",
    ),
    Case("eof_mid_frame", FRESH, eof_mid_frame, CLOSED, "truncated"),
    # well framed, but not a request we know or of the size its code has
    Case("unknown_code_empty", FRESH, raw(header(999, 0)), ERROR, "unknown_code"),
    Case(
        "unknown_code_with_payload",
        FRESH,
        raw(header(1234, 1000) + bytes(1000)),
        ERROR,
        "unknown_code",
    ),
    Case(
        "register_payload_300",
        FRESH,
        raw(header(825, 300) + field255(b"x") + bytes(45)),
        ERROR,
        "bad_payload_size",
    ),
    Case(
        "crc_ok_payload_0", READY, with_id(lambda c: header(900, 0, c)), ERROR, "bad_payload_size"
    ),
    Case(
        "packet_shorter_than_its_fields",
        READY,
        with_id(lambda c: header(828, 100, c) + bytes(100)),
        ERROR,
        "bad_payload_size",
    ),
    # the user name field
    Case("name_without_nul", FRESH, raw(request(825, b"alice" + b" " * 250)), ERROR, "bad_string"),
    Case("name_255_characters", FRESH, raw(request(825, b"n" * 255)), ERROR, "bad_string"),
    Case("name_empty", FRESH, raw(request(825, bytes(255))), ERROR, "bad_string"),
    Case(
        "name_non_ascii", FRESH, raw(request(825, field255("José".encode()))), ERROR, "bad_string"
    ),
    Case(
        "name_control_character",
        FRESH,
        raw(request(825, field255(b"bell\x07name"))),
        ERROR,
        "bad_string",
    ),
    Case("name_del_character", FRESH, raw(request(825, field255(b"del\x7f"))), ERROR, "bad_string"),
    # the public key: 160 bytes of DER of RSA-1024 with e=17, nothing else
    Case(
        "key_e65537_162_bytes",
        REGISTERED,
        key_request(der_with_exponent_65537),
        ERROR,
        "bad_payload_size",
    ),
    Case(
        "key_e65537_cut_to_160",
        REGISTERED,
        key_request(lambda: der_with_exponent_65537()[:160]),
        ERROR,
        "bad_public_key",
    ),
    Case("key_e3", REGISTERED, key_request(der_with_exponent_3), ERROR, "bad_public_key"),
    Case("key_garbage", REGISTERED, key_request(lambda: GARBAGE_KEY), ERROR, "bad_public_key"),
    Case("key_zeros", REGISTERED, key_request(lambda: bytes(160)), ERROR, "bad_public_key"),
    # client ids
    Case(
        # 826 is taken only on the connection that registered (EFT-03): from an unknown
        # id on a fresh connection it is out of order, on the registered one a mismatch.
        "key_from_unknown_id",
        FRESH,
        raw(request(826, field255(b"ghost") + public_der(), RANDOM_ID)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "key_with_another_id_after_register",
        REGISTERED,
        lambda ctx: ctx.peer.send(
            request(826, field255(ctx.name.encode()) + public_der(), RANDOM_ID)
        ),
        ERROR,
        "client_id_mismatch",
    ),
    Case("reconnect_unknown_id", FRESH, raw(request(827, field255(b"ghost"), RANDOM_ID)), DENIED),
    Case(
        "reconnect_known_id_other_name", FRESH, reconnect_with_a_known_id_and_another_name, DENIED
    ),
    Case(
        "key_for_a_client_that_has_one",
        FRESH,
        key_for_a_client_that_has_one,
        ERROR,
        "out_of_order",
    ),
    Case(
        "packet_with_another_clients_id",
        READY,
        lambda ctx: ctx.peer.send(
            packet(RANDOM_ID, b"x.bin", encrypted(ctx.key, b"x"), orig_size=1)
        ),
        ERROR,
        "client_id_mismatch",
    ),
    # requests out of order
    Case(
        "packet_before_key_exchange",
        FRESH,
        raw(packet(bytes(16), b"early.bin", bytes(16), orig_size=0)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "packet_after_register_before_key",
        REGISTERED,
        with_id(lambda c: packet(c, b"early.bin", bytes(16), orig_size=0)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "crc_ok_for_a_file_never_sent",
        READY,
        with_id(lambda c: request(900, field255(b"never.bin"), c)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "give_up_for_a_file_never_sent",
        READY,
        with_id(lambda c: request(902, field255(b"never.bin"), c)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "register_after_key_exchange",
        READY,
        with_id(lambda c: request(825, field255(b"again"), c)),
        ERROR,
        "out_of_order",
    ),
    Case(
        "second_key_on_the_same_connection", READY, key_request(public_der), ERROR, "out_of_order"
    ),
    # packet numbers and sizes
    Case(
        "packet_number_beyond_total",
        READY,
        three_packets([(1, 3), (4, 3), (3, 3)]),
        ERROR,
        "bad_packet",
    ),
    Case("first_packet_is_2", READY, three_packets([(2, 2)]), ERROR, "bad_packet"),
    Case("zero_of_zero_packets", READY, three_packets([(0, 0), (1, 1)]), ERROR, "bad_packet"),
    Case("packet_repeated", READY, three_packets([(1, 3), (1, 3), (3, 3)]), ERROR, "bad_packet"),
    Case("packets_out_of_order", READY, three_packets([(1, 3), (3, 3)]), ERROR, "bad_packet"),
    Case(
        "total_changes_mid_file",
        READY,
        three_packets([(1, 3), (2, 4), (4, 4)]),
        ERROR,
        "bad_packet",
    ),
    Case(
        "more_content_than_content_size", READY, more_content_than_declared, ERROR, "size_mismatch"
    ),
    Case("less_content_than_declared", READY, less_content_than_declared, ERROR, "size_mismatch"),
    Case("bad_cbc_padding", READY, bad_padding, ERROR, "bad_padding"),
    Case("ciphertext_not_whole_blocks", READY, ragged_ciphertext, ERROR, "bad_padding"),
    Case("file_over_max_file_size", READY, over_max_file_size, ERROR, "file_too_large"),
    Case("fifth_attempt_at_a_file", READY, too_many_attempts, ERROR, "too_many_attempts"),
    # file names: a path is stored under its base name; what has no safe base name is refused
    Case(
        "file_name_with_slashes",
        READY,
        named_file(b"dir/sub/name.txt"),
        STORED,
        stored_as="name.txt",
    ),
    Case(
        "file_name_with_backslashes",
        READY,
        named_file(b"C:\\Users\\eve\\win.txt"),
        STORED,
        stored_as="win.txt",
    ),
    Case(
        "file_name_absolute_path",
        READY,
        named_file_at(outside_name("abs.txt")),
        STORED,
        stored_as="abs.txt",
    ),
    Case(
        "file_name_climbing_out",
        READY,
        named_file(b"../../../outside/climb.txt"),
        STORED,
        stored_as="climb.txt",
    ),
    Case(
        "file_name_nul_then_path",
        READY,
        named_file(b"safe.txt\x00/../../outside/nul.txt"),
        STORED,
        stored_as="safe.txt",
    ),
    Case("file_name_dotdot", READY, named_file(b".."), ERROR, "bad_file_name"),
    Case("file_name_dot", READY, named_file(b"."), ERROR, "bad_file_name"),
    Case("file_name_dir_then_dotdot", READY, named_file(b"dir/.."), ERROR, "bad_file_name"),
    Case("file_name_trailing_separator", READY, named_file(b"dir/"), ERROR, "bad_file_name"),
    Case("file_name_root", READY, named_file(b"/"), ERROR, "bad_file_name"),
    Case("file_name_empty", READY, named_file(b""), ERROR, "bad_string"),
    Case("file_name_newline", READY, named_file(b"new\nline.txt"), ERROR, "bad_string"),
    Case("file_name_escape", READY, named_file(b"esc\x1b[2J.txt"), ERROR, "bad_string"),
    Case("file_name_non_ascii", READY, named_file("naïve.txt".encode()), ERROR, "bad_string"),
    Case("file_name_255_characters", READY, named_file(b"f" * 255), ERROR, "bad_string"),
    Case("file_name_device_con", READY, named_file(b"CON"), ERROR, "bad_file_name"),
    Case("file_name_device_aux_txt", READY, named_file(b"aux.txt"), ERROR, "bad_file_name"),
    Case("file_name_device_lpt1", READY, named_file(b"LPT1"), ERROR, "bad_file_name"),
    Case(
        "file_name_device_after_a_path",
        READY,
        named_file(b"dir/nul.tar.gz"),
        ERROR,
        "bad_file_name",
    ),
    Case(
        "file_name_stream_syntax", READY, named_file(b"report.txt:hidden"), ERROR, "bad_file_name"
    ),
    Case("file_name_wildcard", READY, named_file(b"what?.txt"), ERROR, "bad_file_name"),
    Case("file_name_trailing_dot", READY, named_file(b"name."), ERROR, "bad_file_name"),
]


# --- the harness --------------------------------------------------------------------


def probe(ctx: Context, stage: str) -> None:
    """A request whose normal answer must be the next thing the server sends."""
    peer = ctx.peer
    if stage == FRESH:
        peer.send(request(827, field255(b"probe"), bytes(range(16))))
        assert isinstance(peer.receive(), ReconnectDenied)
    elif stage == REGISTERED:
        peer.send_key()
        assert peer.session is not None and peer.session.ready
    else:
        # A good one-packet file, then 902: answered 1603 and 1604, and nothing stored.
        data = b"probe"
        peer.send(packet(ctx.cid, b"probe.txt", encrypted(ctx.key, data), orig_size=len(data)))
        reply = peer.receive()
        assert isinstance(reply, FileReceived), reply
        assert reply.cksum == cksum(data)
        peer.send(request(902, field255(b"probe.txt"), ctx.cid))
        assert isinstance(peer.receive(), Acknowledged)


def check_answer(case: Case, ctx: Context) -> None:
    peer = ctx.peer
    if case.expect == DENIED:
        assert isinstance(peer.receive(), ReconnectDenied)
        probe(ctx, case.stage)
        return
    if case.expect == STORED:
        reply = peer.receive()
        assert isinstance(reply, FileReceived), reply
        assert reply.cksum == cksum(STORED_CONTENT)
        peer.send(request(900, field255(reply.file_name.encode()), ctx.cid))
        assert isinstance(peer.receive(), Acknowledged)
        return
    answer = peer.receive()
    assert isinstance(answer, ServerError), answer
    if case.expect == CLOSED:
        assert peer.closed_by_server(), "the connection should be closed after a framing error"
    else:
        probe(ctx, case.stage)


def allowed_change(path: str, good_dir: str, stored: str | None) -> bool:
    if path.startswith("server/data/eft.sqlite3"):
        return True  # the registry: last_seen, new clients
    if path.startswith(f"server/data/files/{good_dir}/"):
        return True
    return stored is not None and path == stored


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_request_is_refused_and_harms_no_one(case: Case, hostile: Hostile) -> None:
    server = hostile.server
    assert server.proc is not None and server.proc.poll() is None, (
        "the server died in a previous row"
    )
    outside_files = tree(hostile.outside)
    before = tree(hostile.base)
    metrics = Metrics(server)
    # The same name every row: the good client replaces its own file, with new content.
    source = write_random_file(
        hostile.sources / "good.bin", 2 * MiB, seed=zlib.crc32(case.id.encode())
    )
    good = GoodClient(hostile.good, source, server).start_paused()
    since = len(server.logs())  # this row's lines only: earlier rows shared the server
    peer = Peer(server.address)
    name = f"peer-{case.id}"
    ctx = Context(peer, hostile, name)
    try:
        if case.stage == REGISTERED:
            peer.register(name)
        elif case.stage == READY:
            peer.handshake(name)
        case.act(ctx)
        check_answer(case, ctx)
    finally:
        good.resume()
    good.assert_stored_intact()
    local = peer.local
    peer.close()
    wait_closed_on_server(server, local, since)

    # What the server said about it: one line and one count, with the row's reason.
    assert rejections_of(server, local, since) == ([case.reason] if case.reason else [])
    assert metrics.delta("eft_protocol_errors_total") == (1 if case.reason else 0)
    if case.reason:
        assert metrics.delta("eft_protocol_errors_total", reason=case.reason) == 1

    # What it wrote: the good client's file, the registry, and a stored row's one file.
    stored = None
    peer_dir = server.data_dir / "files" / ctx.cid.hex() if peer.session else None
    if case.stored_as:
        assert peer_dir is not None
        stored_path = peer_dir / case.stored_as
        assert stored_path.read_bytes() == STORED_CONTENT
        stored = str(stored_path.relative_to(hostile.base))
        assert sorted(p.name for p in peer_dir.iterdir()) == [case.stored_as]
    elif peer_dir is not None:
        assert not peer_dir.exists() or not any(peer_dir.iterdir())
    after = tree(hostile.base)
    good_dir = hostile.good.client_id_hex
    ours = {
        p for p in changed(before, after) if not p.startswith(("clients/", "sources/", "server."))
    }
    assert {p for p in ours if not allowed_change(p, good_dir, stored)} == set()
    assert set(before) - set(after) == set(), "something was deleted"
    assert tree(hostile.outside) == outside_files
    assert part_files(server.data_dir) == []
    assert not list(Path(server.data_dir / "files").rglob("*.part"))
