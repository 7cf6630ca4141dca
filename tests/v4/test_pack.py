"""Several small whole files in one record (feature PACK: 904 and its answer 1608), in
memory: the codec (every length that does not add up closes, a bad name is an outcome),
and both sessions wired together — the feature's selection, file ids, the window, a
differing digest, refusals that let the session go on, and the 1608 sent only with its
group, after the ``CommitGroup`` that makes its files durable."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eft_protocol.errors import ResponseError
from eft_protocol.notices import ClosedSilently, PackStored, RequestRefused
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import paths
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import (
    FEATURE_NEXT_KEY,
    FEATURE_PACK,
    FEATURE_STREAM,
    FEATURE_WIDE_WINDOW,
    HandshakeError,
    Offer,
)
from eft_protocol.v4.pack import (
    ENTRY_HEAD_SIZE,
    MAX_ANSWER_SIZE,
    MAX_PACKED_SIZE,
    PACK,
    PACK_ANSWER,
    PACK_FILES,
    PACK_HEAD_SIZE,
    Outcome,
    Refusal,
    decode_answer,
    decode_pack,
    encode_answer,
    encode_pack,
    pack_size,
)
from tests.v4.test_v4_vectors import VECTORS, Scenario


def _digest(data: bytes) -> bytes:
    return file_digest(data).digest()


def _entry(name: str, data: bytes) -> tuple[bytes, bytes, bytes]:
    return name.encode(), _digest(data), data


# --- the codec -----------------------------------------------------------------------

_names = st.lists(
    st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12), min_size=1, max_size=3
).map("/".join)


@given(
    first=st.integers(1, 0xFFFF_FFFF - PACK_FILES),
    files=st.lists(st.tuples(_names, st.binary(max_size=64)), min_size=1, max_size=PACK_FILES),
    sync_now=st.booleans(),
    algorithm=st.integers(0, 255),
)
def test_a_pack_round_trips(
    first: int, files: list[tuple[str, bytes]], sync_now: bool, algorithm: int
) -> None:
    entries = [_entry(name, data) for name, data in files]
    plaintext = encode_pack(first, algorithm, entries, sync_now=sync_now)
    assert len(plaintext) == pack_size([(n, len(d)) for n, _, d in entries])
    pack = decode_pack(plaintext)
    assert (pack.first_file_id, pack.digest_algorithm, pack.sync_now) == (
        first,
        algorithm,
        sync_now,
    )
    assert pack.last_file_id == first + len(files) - 1
    decoded = [(f.file_id, f.name.encode(), f.digest, bytes(f.data)) for f in pack.files]
    assert decoded == [(first + n, *entry) for n, entry in enumerate(entries)]
    for file in pack.files:  # a name the rules refuse is kept, marked, not raised
        assert str(file.bad_name) == str(_why_bad(file.name.encode()))


def _why_bad(name: bytes) -> paths.BadPath | None:
    try:
        paths.decode_path(name)
    except paths.BadPath as exc:
        return exc
    return None


def test_a_pack_s_data_are_views_of_the_record_not_copies() -> None:
    plaintext = encode_pack(1, 1, [_entry("a", b"xyz")])
    (file,) = decode_pack(plaintext).files
    assert file.data.obj is plaintext


def _head(first: int = 1, count: int = 1, flags: int = 0, algorithm: int = 1) -> bytes:
    return struct.pack("<IHBB", first, count, flags, algorithm)


def _raw_entry(size: int, name: bytes, data: bytes) -> bytes:
    return struct.pack("<IH32s", size, len(name), bytes(32)) + name + data


@pytest.mark.parametrize(
    ("plaintext", "why"),
    [
        (_head()[:-1], "too short"),
        (_head(count=0), "1 to 64"),
        (_head(count=65) + _raw_entry(0, b"a", b"") * 65, "1 to 64"),
        (_head(flags=0x02) + _raw_entry(1, b"a", b"x"), "reserved flags"),
        (_head(flags=0x80) + _raw_entry(1, b"a", b"x"), "reserved flags"),
        (_head(first=0) + _raw_entry(1, b"a", b"x"), "out of range"),
        (_head(first=0xFFFF_FFFF, count=2) + _raw_entry(0, b"a", b"") * 2, "out of range"),
        (_head() + _raw_entry(1, b"a", b"x") + b"!", "after its last entry"),
        (_head() + _raw_entry(2, b"a", b"x"), "longer than the record"),
        (_head() + _raw_entry(1, b"", b"x"), "longer than the record"),  # name_len 0
        (_head(count=2) + _raw_entry(1, b"a", b"x"), "inside an entry"),
        (_head(count=2) + _raw_entry(1, b"a", b"x") + bytes(ENTRY_HEAD_SIZE - 1), "inside"),
    ],
)
def test_a_pack_whose_lengths_do_not_add_up_is_malformed(plaintext: bytes, why: str) -> None:
    with pytest.raises(rec.RecordError, match=why):
        decode_pack(plaintext)


def test_the_last_file_id_may_be_the_largest_there_is() -> None:
    pack = decode_pack(_head(first=0xFFFF_FFFE, count=2) + _raw_entry(0, b"a", b"") * 2)
    assert pack.last_file_id == 0xFFFF_FFFF


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (b"../x", "'..' component"),
        (b"/etc/x", "absolute"),
        (b"a//b", "empty component"),
        (b"a\x01b", "control character"),
        (b"nul.txt", "reserved device name"),
        (b"\xff", "not valid UTF-8"),
    ],
)
def test_a_bad_name_is_kept_as_bad_name_not_raised(name: bytes, words: str) -> None:
    plaintext = encode_pack(7, 1, [(b"ok.txt", bytes(32), b"1"), (name, bytes(32), b"2")])
    ok, bad = decode_pack(plaintext).files
    assert ok.bad_name is None and ok.name == "ok.txt"
    assert bad.bad_name is not None and words in str(bad.bad_name)
    assert (bad.file_id, bytes(bad.data)) == (8, b"2")


def test_encode_pack_refuses_what_no_peer_may_send() -> None:
    with pytest.raises(ValueError, match="1 to 64"):
        encode_pack(1, 1, [])
    with pytest.raises(ValueError, match="1 to 64"):
        encode_pack(1, 1, [(b"a", bytes(32), b"")] * (PACK_FILES + 1))
    with pytest.raises(ValueError, match="at most"):
        encode_pack(1, 1, [(b"a", bytes(32), bytes(MAX_PACKED_SIZE))])


def test_a_file_of_max_packed_size_fills_a_record_exactly() -> None:
    name = b"n"
    data = bytes(MAX_PACKED_SIZE - len(name))
    plaintext = encode_pack(1, 1, [(name, bytes(32), data)])
    assert len(plaintext) == rec.MAX_PLAINTEXT == PACK_HEAD_SIZE + ENTRY_HEAD_SIZE + len(data) + 1
    assert bytes(decode_pack(plaintext).files[0].data) == data


@given(
    first=st.integers(0, 0xFFFF_FFFF),
    outcomes=st.lists(
        st.one_of(
            st.sampled_from([Outcome.STORED, Outcome.DIGEST_DIFFERED]),
            st.builds(Refusal, st.integers(0, 0xFFFF), st.text("abc xyz:'/.", max_size=200)),
        ),
        max_size=PACK_FILES,
    ),
)
def test_an_answer_round_trips(first: int, outcomes: list[int | Refusal]) -> None:
    assert decode_answer(encode_answer(first, outcomes)) == (first, outcomes)


def test_the_largest_answer_is_max_answer_size() -> None:
    longest = [Refusal(rec.ErrorCode.BAD_FILE_NAME, "x" * 300)] * PACK_FILES  # cut to 200
    plaintext = encode_answer(1, list(longest))
    assert len(plaintext) == MAX_ANSWER_SIZE
    _, outcomes = decode_answer(plaintext)
    assert outcomes == [Refusal(rec.ErrorCode.BAD_FILE_NAME, "x" * 200)] * PACK_FILES


@pytest.mark.parametrize(
    ("plaintext", "why"),
    [
        (b"\x01\x00\x00\x00\x01", "too short"),
        (struct.pack("<IH", 1, 2) + b"\x00", "before its last outcome"),
        (struct.pack("<IH", 1, 1) + b"\x03", "unknown or cut outcome 3"),
        (struct.pack("<IH", 1, 1) + b"\x02\x02\x00", "unknown or cut outcome 2"),
        (struct.pack("<IH", 1, 1) + b"\x02\x02\x00\x05abc", "longer than the record"),
        (struct.pack("<IH", 1, 1) + b"\x00\x00", "after its last outcome"),
    ],
)
def test_a_malformed_answer_is_an_error(plaintext: bytes, why: str) -> None:
    with pytest.raises(rec.RecordError, match=why):
        decode_answer(plaintext)


@pytest.mark.parametrize(
    ("plaintext", "message"),
    [
        (_head()[:-1], "904 too short"),
        (_head(flags=0x02) + _raw_entry(1, b"a", b"x"), "904 has reserved flags set"),
        (_head(first=0) + _raw_entry(1, b"a", b"x"), "904's file ids are out of range"),
        (_head(count=2) + _raw_entry(1, b"a", b"x"), "904 ends inside an entry"),
        (_head() + _raw_entry(2, b"a", b"x"), "904's entry is longer than the record"),
        # an entry's head and nothing after it: its name is what is missing
        (_head() + struct.pack("<IH32s", 0, 1, bytes(32)), "904's entry is longer than the record"),
        (_head() + _raw_entry(1, b"a", b"x") + b"!", "904 has bytes after its last entry"),
    ],
)
def test_a_malformed_pack_s_error_says_exactly_what_is_wrong(
    plaintext: bytes, message: str
) -> None:
    """The message is the one the connection's close logs and sends (1607): each names its
    case, whole (``match`` above finds words in it, and would pass with more around them)."""
    with pytest.raises(rec.RecordError) as raised:
        decode_pack(plaintext)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("plaintext", "message"),
    [
        (b"\x01\x00\x00\x00\x01", "1608 too short"),
        (struct.pack("<IH", 1, 2) + b"\x00", "1608 ends before its last outcome"),
        (
            struct.pack("<IH", 1, 1) + b"\x02\x02\x00\x05abc",
            "1608's refusal is longer than the record",
        ),
        (struct.pack("<IH", 1, 1) + b"\x00\x00", "1608 has bytes after its last outcome"),
    ],
)
def test_a_malformed_answer_s_error_says_exactly_what_is_wrong(
    plaintext: bytes, message: str
) -> None:
    with pytest.raises(rec.RecordError) as raised:
        decode_answer(plaintext)
    assert str(raised.value) == message


def test_a_refusal_message_that_is_not_ascii_is_decoded_not_raised() -> None:
    """A server's message bytes are not trusted to be ASCII: each other byte is shown
    as U+FFFD, and the answer's other outcomes are kept (a ``UnicodeDecodeError`` would
    escape the client as no ``RecordError`` does)."""
    plaintext = struct.pack("<IH", 5, 2) + b"\x02\x02\x00\x04a\xffb\xe9" + b"\x00"
    assert decode_answer(plaintext) == (5, [Refusal(2, "a\ufffdb\ufffd"), Outcome.STORED])


# --- both sessions, in memory ----------------------------------------------------------


class PackDriver:
    """The server's driver as ``connection_v4`` carries PACK out: a ``StorePack``'s files
    staged (``refuse`` says which storage refuses), made durable at ``CommitGroup``; a
    1608 sent while a file of its pack is not durable fails here."""

    def __init__(self, server: v4s.ServerSessionV4) -> None:
        self.server = server
        self.refuse: dict[str, Refusal] = {}
        self.staged: list[tuple[str, bytes]] = []
        self.durable: dict[str, bytes] = {}
        self.groups: list[int] = []
        self.out: list[bytes] = []
        self.stored: list[v4s.StorePack] = []
        self.notices: list[Any] = []
        self.closed = False

    def feed(self, frame: bytes) -> None:
        self.server.payload_size(frame[:23])
        self.apply(self.server.receive(frame[:23], frame[23:], now=0.0))

    def feed_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            if self.closed:
                return
            self.feed(frame)

    def apply(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, v4s.StorePack):
                self.stored.append(effect)
                refused = {}
                for file in effect.files:
                    if file.name in self.refuse:
                        refused[file.file_id] = self.refuse[file.name]
                    else:
                        self.staged.append((file.name, bytes(file.data)))
                self.apply(self.server.pack_stored(refused, 0.0))
            elif isinstance(effect, v4s.CommitGroup):
                self.groups.append(len(self.staged))
                self.durable.update(self.staged)
                self.staged = []
            elif isinstance(effect, v4s.SendFrame):
                if effect.code == PACK_ANSWER:
                    assert not self.staged, "a 1608 before its group is durable"
                self.out.append(effect.frame)
            elif isinstance(effect, v4s.Close):
                self.closed = True
            else:
                self.notices.append(effect)

    def take(self) -> list[bytes]:
        out, self.out = self.out, []
        return out


def _handshaken(features: int | None = None) -> Scenario:
    scenario = Scenario()
    if features is not None:
        scenario.client.offer = Offer(features=features)
    scenario.to_server(scenario.client.start())
    reply = scenario.to_client(scenario.sent[0])
    scenario.to_server(reply.send[0])
    scenario.to_client(scenario.sent[0])
    assert scenario.client.ready
    return scenario


def _seal(client: v4c.ClientSessionV4, files: dict[str, bytes], *, last: bool) -> bytes:
    entries = [_entry(name, data) for name, data in files.items()]
    _, pieces = client.seal_pack(entries, sync_now=last)
    return b"".join(bytes(piece) for piece in pieces)


@pytest.mark.parametrize("missing", [FEATURE_WIDE_WINDOW, FEATURE_STREAM])
def test_a_client_does_not_follow_a_server_that_selects_pack_alone(missing: int) -> None:
    """A server that selects PACK without the wide window (or STREAM) breaks section
    8.2: our client then sends no pack (a pack of fewer than 32 files, not the last,
    would wait for a group the narrow window's server answers only at 32)."""
    scenario = _handshaken()
    hello = scenario.client.server_hello
    assert hello is not None
    scenario.client.server_hello = dataclasses.replace(hello, features=hello.features & ~missing)
    assert scenario.client.features & FEATURE_PACK
    assert scenario.client.pack_files == 0
    with pytest.raises(RuntimeError, match="PACK"):
        scenario.client.seal_pack([_entry("a", b"x")], sync_now=True)


def _hand_made(scenario: Scenario, plaintext: bytes | bytearray) -> bytes:
    """A 904 sealed as a hostile client would, past the client session's checks."""
    send = scenario.client._send
    assert send is not None
    return rec.request_record(send, scenario.client.client_id, PACK, bytes(plaintext))


def _answers(scenario: Scenario, frames: list[bytes]) -> list[v4c.ReplyV4]:
    return [scenario.to_client(frame) for frame in frames]


def test_pack_is_selected_with_stream_and_the_wide_window() -> None:
    scenario = _handshaken()
    assert scenario.client.features & FEATURE_PACK and scenario.server.features & FEATURE_PACK
    assert scenario.client.pack_files == PACK_FILES


@pytest.mark.parametrize(
    "features",
    [
        FEATURE_NEXT_KEY | FEATURE_STREAM | FEATURE_PACK,  # no wide window
        FEATURE_NEXT_KEY | FEATURE_WIDE_WINDOW | FEATURE_PACK,  # no STREAM
        FEATURE_NEXT_KEY | FEATURE_STREAM | FEATURE_WIDE_WINDOW,  # not offered
    ],
)
def test_pack_is_not_selected_without_stream_and_the_wide_window(features: int) -> None:
    scenario = _handshaken(features)
    assert not scenario.server.features & FEATURE_PACK
    assert not scenario.client.features & FEATURE_PACK
    assert scenario.client.pack_files == 0
    with pytest.raises(RuntimeError, match="PACK"):
        scenario.client.seal_pack([_entry("a", b"x")], sync_now=True)
    # and a 904 sent anyway closes the connection, unanswered
    driver = PackDriver(scenario.server)
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b"x")])))
    assert driver.closed and not driver.out and not driver.stored


def test_packs_are_stored_and_answered_with_their_group_in_file_id_order() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, PackDriver(scenario.server)
    files = {f"d{i % 5}/f{i}.txt": bytes([i % 251]) * (i % 40) for i in range(300)}
    items = list(files.items())
    outcomes: list[tuple[int, list[int | Refusal]]] = []
    while items or client.unanswered:
        if items and client.unanswered + PACK_FILES <= client.stream_window:
            batch, items = dict(items[:PACK_FILES]), items[PACK_FILES:]
            driver.feed(_seal(client, batch, last=not items))
            assert scenario.server.unanswered <= client.stream_window
            continue
        frames = driver.take()
        assert frames, "the client waits: the server must have answered a group already"
        for reply in _answers(scenario, frames):
            assert reply.pack_outcomes is not None and reply.file_id is not None
            outcomes.append((reply.file_id, reply.pack_outcomes))
    assert [first for first, _ in outcomes] == list(range(1, 301, PACK_FILES))
    assert [o for _, each in outcomes for o in each] == [Outcome.STORED] * 300
    assert driver.durable == files
    # groups of at least W/2 files, the last one when SYNC_NOW asked for it
    assert all(size >= scenario.server.group_files for size in driver.groups[:-1])
    assert sum(driver.groups) == 300 and client.unanswered == 0
    assert scenario.server.state is v4s.ServerStateV4.IDLE and scenario.server.unanswered == 0


def test_a_pack_is_not_answered_before_its_group_unless_sync_now() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, PackDriver(scenario.server)
    driver.feed(_seal(client, {"a": b"1", "b": b"2"}, last=False))
    assert driver.out == [] and driver.groups == []
    assert not [e for e in driver.notices if isinstance(e, PackStored)]  # once durable
    driver.feed(_seal(client, {"c": b"3"}, last=True))
    assert driver.groups == [3]
    assert [e.fields["files"] for e in driver.notices if isinstance(e, PackStored)] == [2, 1]
    replies = _answers(scenario, driver.take())
    assert [(r.file_id, r.pack_outcomes) for r in replies] == [(1, [0, 0]), (3, [0])]
    assert client.unanswered == 0


def test_a_group_is_answered_once_it_holds_half_the_window() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, PackDriver(scenario.server)
    group = scenario.server.group_files
    for n in range(group // PACK_FILES):
        driver.feed(_seal(client, {f"{n}/{i}": b"z" for i in range(PACK_FILES)}, last=False))
    assert driver.groups == [group]
    assert len(driver.take()) == group // PACK_FILES


def test_file_ids_must_increase_from_pack_to_pack() -> None:
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b"1"), _entry("b", b"2")])))
    assert not driver.closed
    driver.feed(_hand_made(scenario, encode_pack(2, 1, [_entry("c", b"3")])))
    assert driver.closed and driver.staged == [("a", b"1"), ("b", b"2")]


def test_file_ids_must_increase_after_a_streamed_file() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, PackDriver(scenario.server)
    frame = client.begin_stream_file("s.txt", 1, bytes(16))
    driver.apply(scenario.server.receive(frame[:23], frame[23:], now=0.0))
    upload = scenario.server._upload
    assert upload is not None and upload.file_id == 1
    driver.apply(scenario.server.upload_ready(0))
    chunk = client.chunk_record(1, b"s")
    effects = scenario.server.receive(chunk[:23], chunk[23:], now=0.0)
    assert any(isinstance(e, v4s.FinishUpload) for e in effects)
    effects = scenario.server.upload_complete(_digest(b"s"), now=0.0)
    commit = client.commit_if(_digest(b"s"), sync_now=False)
    effects += scenario.server.receive(commit[:23], commit[23:], now=0.0)
    assert scenario.server.state is v4s.ServerStateV4.IDLE
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("p", b"p")])))
    assert driver.closed and not driver.stored


def test_a_pack_over_the_window_closes() -> None:
    """The server answers a group every W/2 files, so a correct client never gets here:
    the bound is for one that sends on regardless (its unanswered count set by hand)."""
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    scenario.server.unanswered = scenario.server.window - 1
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b""), _entry("b", b"")])))
    assert driver.closed and not driver.stored


def test_a_pack_of_exactly_the_window_left_is_taken() -> None:
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    scenario.server.unanswered = scenario.server.window - 2
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b""), _entry("b", b"")])))
    assert not driver.closed


def test_a_differing_digest_is_outcome_1_and_the_client_sends_the_file_again() -> None:
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    client = scenario.client
    entries = [_entry("good", b"good"), (b"spoilt", _digest(b"other"), b"spoilt")]
    _, pieces = client.seal_pack(entries, sync_now=True)
    driver.feed(b"".join(bytes(p) for p in pieces))
    (reply,) = _answers(scenario, driver.take())
    assert reply.pack_outcomes == [Outcome.STORED, Outcome.DIGEST_DIFFERED]
    assert driver.durable == {"good": b"good"}
    (stored,) = driver.stored
    assert [f.name for f in stored.files] == ["good"], "a differing file never reaches storage"
    (packed,) = [n for n in driver.notices if type(n).__name__ == "PackStored"]
    assert (packed.fields["files"], packed.fields["retried"], packed.fields["refused"]) == (1, 1, 0)


def test_refusals_are_outcomes_and_the_session_goes_on() -> None:
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    driver.refuse["taken"] = Refusal(rec.ErrorCode.BAD_FILE_NAME, "taken is a folder")
    plaintext = encode_pack(
        1,
        1,
        [_entry("ok", b"1"), (b"../x", _digest(b"2"), b"2"), _entry("taken", b"3")],
    )
    driver.feed(_hand_made(scenario, plaintext))
    driver.feed(_hand_made(scenario, encode_pack(4, 99, [_entry("alg", b"4")], sync_now=True)))
    assert not driver.closed
    frames = driver.take()
    scenario.client._packs = {1: 3, 4: 1}  # the client did not seal these itself
    scenario.client._packed, scenario.client._file_id = 4, 4
    replies = _answers(scenario, frames)
    assert [r.pack_outcomes for r in replies] == [
        [
            Outcome.STORED,
            Refusal(rec.ErrorCode.BAD_FILE_NAME, "'../x' has a '..' component"),
            Refusal(rec.ErrorCode.BAD_FILE_NAME, "taken is a folder"),
        ],
        [Refusal(rec.ErrorCode.UNKNOWN_DIGEST, "unknown digest algorithm 99")],
    ]
    assert driver.durable == {"ok": b"1"}
    assert [f.name for f in driver.stored[0].files] == ["ok", "taken"]
    assert driver.stored[1].files == []
    # and the next pack is taken as any
    driver.feed(_seal(scenario.client, {"after": b"5"}, last=True))
    assert _answers(scenario, driver.take())[0].pack_outcomes == [Outcome.STORED]
    assert driver.durable["after"] == b"5"


def test_a_file_over_the_size_limit_is_refused_in_the_answer() -> None:
    scenario = _handshaken()
    scenario.server.max_file_size = 3
    driver = PackDriver(scenario.server)
    driver.feed(_seal(scenario.client, {"small": b"abc", "big": b"abcd"}, last=True))
    (reply,) = _answers(scenario, driver.take())
    assert reply.pack_outcomes == [
        Outcome.STORED,
        Refusal(rec.ErrorCode.TOO_LARGE, "the file is over the limit"),
    ]


def test_the_client_will_not_seal_a_pack_past_its_window() -> None:
    scenario = _handshaken()
    client = scenario.client
    for n in range(client.stream_window // PACK_FILES):
        client.seal_pack([_entry(f"{n}/{i}", b"") for i in range(PACK_FILES)], sync_now=False)
    assert client.unanswered == client.stream_window
    with pytest.raises(RuntimeError, match="window is full"):
        client.seal_pack([_entry("one-more", b"")], sync_now=True)


def test_the_client_counts_a_pack_s_files_until_its_answer() -> None:
    scenario = _handshaken()
    client, driver = scenario.client, PackDriver(scenario.server)
    driver.feed(_seal(client, {"a": b"", "b": b""}, last=False))
    assert client.unanswered == 2
    driver.feed(_seal(client, {"c": b""}, last=True))
    assert client.unanswered == 3
    first, second = driver.take()
    scenario.to_client(first)
    assert client.unanswered == 1
    scenario.to_client(second)
    assert client.unanswered == 0 and client.last_file_id == 3


@pytest.mark.parametrize(
    "answer",
    [
        encode_answer(2, [Outcome.STORED, Outcome.STORED]),  # no pack starts at 2
        encode_answer(1, [Outcome.STORED]),  # the pack at 1 has two files
        encode_answer(1, [Outcome.STORED] * 3),
    ],
)
def test_an_answer_to_no_pack_in_flight_is_an_error(answer: bytes) -> None:
    scenario = _handshaken()
    client = scenario.client
    client.seal_pack([_entry("a", b""), _entry("b", b"")], sync_now=True)
    frame = rec.response_record(scenario.server._send, PACK_ANSWER, answer)  # type: ignore[arg-type]
    with pytest.raises(ResponseError, match="not the answer to a pack"):
        scenario.to_client(frame)


def test_a_storage_failure_mid_pack_forgets_its_answers() -> None:
    scenario = _handshaken()
    server = scenario.server
    frame = _seal(scenario.client, {"a": b"1"}, last=False)
    server.payload_size(frame[:23])
    effects = server.receive(frame[:23], frame[23:], now=0.0)
    assert any(isinstance(e, v4s.StorePack) for e in effects)
    assert server.state is v4s.ServerStateV4.STORING_PACK
    failed = server.storage_failed("StorageError", detail="disk gone")
    assert any(isinstance(e, v4s.Close) for e in failed)
    assert not [e for e in failed if isinstance(e, v4s.SendFrame) and e.code == PACK_ANSWER]
    assert server._packing is None and server._group == []


def test_a_pack_is_refused_while_storage_still_writes_the_last() -> None:
    """STORING_PACK waits for ``pack_stored``: no record is read, a 904 included."""
    scenario = _handshaken()
    server = scenario.server
    frame = _seal(scenario.client, {"a": b"1"}, last=False)
    server.payload_size(frame[:23])
    server.receive(frame[:23], frame[23:], now=0.0)
    assert PACK not in v4s.ALLOWED[server.state]


# --- the vectors of docs/PROTOCOL-v4.md section 6.6 -------------------------------------


@pytest.mark.parametrize("code", [PACK, PACK_ANSWER])
def test_the_documented_vectors_are_the_json_s(code: int) -> None:
    """The table's hex for 904 and 1608, spaces removed, is the vector's plaintext (which
    tests/v4/test_messages.py checks both ways against the codec)."""
    (vector,) = [m for m in VECTORS["messages"] if m["code"] == code]
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL-v4.md").read_text(encoding="utf-8")
    # The vectors' table (section 6.6), not the layouts' (6.5): its rows end in hex.
    section = doc[doc.index("### 6.6 Message vectors") : doc.index("## 7. State machines")]
    (row,) = [line for line in section.splitlines() if line.startswith(f"| {code} ")]
    assert row.rsplit("`", 2)[1].replace(" ", "") == vector["plaintext"]


def test_a_pack_in_the_middle_of_a_streamed_file_is_refused_at_its_header() -> None:
    """Only between files: a 904 whose header comes while a streamed file's data is
    still due closes the connection before its payload is read."""
    scenario = _handshaken()
    client, server = scenario.client, scenario.server
    frame = client.begin_stream_file("s.bin", 2 * rec.CHUNK, bytes(16))
    server.payload_size(frame[:23])
    server.receive(frame[:23], frame[23:], now=0.0)
    server.upload_ready(0)
    assert server.state is not v4s.ServerStateV4.IDLE
    pack = _hand_made(scenario, encode_pack(2, 1, [_entry("p", b"p")]))
    with pytest.raises(HandshakeError, match="904 is not allowed"):
        server.payload_size(pack[:23])


# --- what the first round of mutation testing left (docs/TESTING.md, eighth round) ------


def _closed_because(driver: PackDriver) -> str:
    assert driver.closed
    (closed,) = [e for e in driver.notices if isinstance(e, ClosedSilently)]
    return str(closed.fields["detail"])


def test_a_pack_the_session_cannot_take_is_closed_with_a_message_that_says_why() -> None:
    """The message is logged with the close: each of the session's three checks names
    its own case, whole."""
    scenario = _handshaken(FEATURE_NEXT_KEY | FEATURE_STREAM | FEATURE_WIDE_WINDOW)
    driver = PackDriver(scenario.server)
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b"x")])))
    assert _closed_because(driver) == "904 without the PACK feature"
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    driver.feed(_hand_made(scenario, encode_pack(2, 1, [_entry("a", b"1")])))
    driver.feed(_hand_made(scenario, encode_pack(2, 1, [_entry("b", b"2")])))
    assert _closed_because(driver) == "file ids must increase within a connection"
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    scenario.server.unanswered = scenario.server.window
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b"")])))
    assert _closed_because(driver) == f"more than {scenario.server.window} files unanswered"


def test_a_pack_adds_its_files_to_those_already_unanswered() -> None:
    scenario = _handshaken()
    driver = PackDriver(scenario.server)
    scenario.server.unanswered = 5  # a streamed file's, say, not answered yet
    driver.feed(_hand_made(scenario, encode_pack(1, 1, [_entry("a", b""), _entry("b", b"")])))
    assert not driver.closed and scenario.server.unanswered == 7


def test_a_pack_s_notices_count_each_outcome_and_name_each_refused_file() -> None:
    """One pack, answered at once (sync now): a file refused by the session (its name),
    one by storage (no room), two whose digests differed, one stored. Each refusal is a
    ``RequestRefused`` of its own, before the group's commit, which a flush must not
    drop; ``PackStored`` counts the rest, and the time from the record to the verdict."""
    scenario = _handshaken()
    server = scenario.server
    entries = [
        (b"../up", _digest(b"u"), b"u"),
        (b"full", _digest(b"ff"), b"ff"),
        (b"spoilt1", _digest(b"other"), b"s1"),
        (b"spoilt2", _digest(b"other"), b"s2"),
        (b"kept", _digest(b"kkk"), b"kkk"),
    ]
    plaintext = encode_pack(1, 1, entries, sync_now=True)
    frame = _hand_made(scenario, plaintext)
    server.payload_size(frame[:23])
    (store,) = server.receive(frame[:23], frame[23:], now=10.0)
    assert isinstance(store, v4s.StorePack)
    no_room = Refusal(rec.ErrorCode.NO_SPACE, "no space")
    effects = server.pack_stored({2: no_room}, now=12.5)
    refused = [e for e in effects if isinstance(e, RequestRefused)]
    bad_name = decode_pack(plaintext).files[0].bad_name
    assert [e.fields for e in refused] == [
        {"error_code": rec.ErrorCode.BAD_FILE_NAME, "detail": str(bad_name), "file": "../up"},
        {"error_code": rec.ErrorCode.NO_SPACE, "detail": "no space", "file": "full"},
    ]
    assert isinstance(effects[len(refused)], v4s.CommitGroup), "the refusals come first"
    (stored,) = [e for e in effects if isinstance(e, PackStored)]
    assert stored.fields == {
        "files": 1,
        "bytes": 3,
        "sizes": [3],
        "retried": 2,
        "refused": 2,
        "duration": 2.5,
        "version": 4,
    }
