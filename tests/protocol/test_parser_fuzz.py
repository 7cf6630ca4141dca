"""Fuzzing the frame parser and the server session with mutated valid streams.

The seeds are real client-to-server byte streams, recorded at import time from a
``ClientSession`` talking to a ``ServerSession`` whose randomness is pinned, so that
replayed into a fresh session they are valid all the way (register, key exchange, a
file, 900; a reconnect, a file, 902; a file, 901, the file again, 900). Each example
mutates one or two seeds (bit flips, byte overwrites, truncation, splices of two streams, inserted
noise, deleted and repeated ranges, header fields set to edge values), cuts the result
into TCP-sized pieces anywhere, and feeds it to ``RequestParser`` and ``ServerSession``.

What must hold: only ``ProtocolError``s (in fact only fatal ``FramingError``s, which
close the connection) ever escape the parser; ``ServerSession.handle`` never raises, and
every response it asks for encodes.

In CI it runs a few hundred examples. Longer::

    EFT_FUZZ_EXAMPLES=200000 .venv/bin/pytest tests/protocol/test_parser_fuzz.py -q

Hypothesis keeps any failure in ``.hypothesis/`` and replays it first next time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from eft_protocol import crypto, errors
from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession, Identity
from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.parser import (
    NEED_DATA,
    NeedData,
    ParserLimits,
    RequestEvent,
    RequestParser,
    ResponseParser,
)
from eft_protocol.registry import ClientRecord, MemoryRegistry
from eft_protocol.wire import CrcGiveUpRequest, CrcOkRequest, CrcRetryRequest, PacketHeader
from tests.hostile.helpers import shared_key
from tests.support.examples import examples

EXAMPLES = int(os.environ.get("EFT_FUZZ_EXAMPLES", examples(300)))
CLIENT_ID = bytes(range(16))
KNOWN_ID = bytes(range(16, 32))
FILE = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 49 blocks, several packets


def _randfunc() -> crypto.RandFunc:
    """Deterministic 'randomness' for the server: the same key for every replay."""
    counter = itertools.count()

    def rand(n: int) -> bytes:
        return bytes((next(counter) * 7 + i) & 0xFF for i in range(n))

    return rand


def _registry() -> MemoryRegistry:
    registry = MemoryRegistry()
    der = crypto.public_key_der(shared_key())
    registry.save_client(ClientRecord(KNOWN_ID, "rita", 0.0, der))
    return registry


def _server() -> ss.ServerSession:
    return ss.ServerSession(
        _registry(),
        limits=ss.ServerLimits(max_file_size=1 << 16),
        randfunc=_randfunc(),
        new_client_id=lambda: CLIENT_ID,
    )


def _file_frames(client_id: bytes, key: bytes, packet_size: int) -> list[bytes]:
    cipher = crypto.encrypt_file_bytes(key, FILE)
    pieces = [cipher[i : i + packet_size] for i in range(0, len(cipher), packet_size)]
    return [
        PacketHeader(
            client_id, len(cipher), len(FILE), number, len(pieces), "fuzz.bin"
        ).encode_frame_start(len(piece))
        + piece
        for number, piece in enumerate(pieces, start=1)
    ]


def _record(client: ClientSession, script: list[tuple[str, int]]) -> tuple[bytes, list[int]]:
    """Handshake, then ``script``, against a fresh server: the bytes and frame offsets."""
    server, parser, responses = _server(), RequestParser(), ResponseParser()
    stream = bytearray()
    offsets: list[int] = []

    def send(frames: list[bytes]) -> None:
        for frame in frames:
            offsets.append(len(stream))
            stream.extend(frame)
            parser.receive_data(frame)
            while (event := parser.next_event()) is not NEED_DATA:
                for effect in server.handle(event, 0.0):
                    assert not isinstance(effect, ss.Rejected), effect
                    if isinstance(effect, ss.Send):
                        responses.receive_data(effect.response.encode())

    send(client.start())
    while not client.ready:
        response = responses.next_event()
        assert response is not NEED_DATA
        send(client.receive(response).send)
    assert client._aes_key is not None
    for action, argument in script:
        if action == "file":
            send(_file_frames(client.client_id, client._aes_key, argument))
        else:
            request = {900: CrcOkRequest, 901: CrcRetryRequest, 902: CrcGiveUpRequest}[argument]
            send([request(client.client_id, "fuzz.bin").encode()])
    assert server.state is ss.State.READY
    return bytes(stream), offsets


def _seeds() -> list[tuple[bytes, list[int]]]:
    new = ClientSession("fuzzer", new_key=shared_key)
    returning = ClientSession("rita", Identity("rita", KNOWN_ID, shared_key()))
    again = ClientSession("fuzzer", new_key=shared_key)
    return [
        # 825, 826, a file in 64-byte packets, 900
        _record(new, [("file", 64), ("verdict", 900)]),
        # 827, a file in 16-byte packets (the smallest possible), 902
        _record(returning, [("file", 16), ("verdict", 902)]),
        # 825, 826, a file in one packet, 901, the file again in 256-byte packets, 900
        _record(again, [("file", 1024), ("verdict", 901), ("file", 256), ("verdict", 900)]),
    ]


SEEDS = _seeds()
EDGE_U32 = [0, 1, 15, 16, 17, 254, 255, 256, 266, 267, 268, 415, 416, 0xFFFF, 1 << 20, 0xFFFFFFFF]
EDGE_U16 = [0, 1, 2, 3, 824, 825, 826, 827, 828, 829, 900, 901, 902, 903, 0xFFFF]
EDGE_U8 = [0, 2, 3, 4, 255]


@st.composite
def mutation(draw: st.DrawFn, blob: bytes, offsets: list[int]) -> bytes:
    data = bytearray(blob)
    if not data:
        return bytes(data)
    kind = draw(
        st.sampled_from(
            ["flip", "flip", "byte", "truncate", "insert", "delete", "repeat", "header"]
        )
    )
    position = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        data[position] ^= 1 << draw(st.integers(0, 7))
    elif kind == "byte":
        data[position] = draw(st.integers(0, 255))
    elif kind == "truncate":
        del data[position:]
    elif kind == "insert":
        data[position:position] = draw(st.binary(min_size=1, max_size=40))
    elif kind == "delete":
        del data[position : position + draw(st.integers(1, 300))]
    elif kind == "repeat":
        end = min(len(data), position + draw(st.integers(1, 600)))
        data[end:end] = data[position:end]
    else:
        start = draw(
            st.sampled_from([o for o in offsets if o + REQUEST_HEADER.size <= len(data)] or [0])
        )
        if start + REQUEST_HEADER.size <= len(data):
            field = draw(st.sampled_from(["version", "code", "size"]))
            if field == "version":
                data[start + 16] = draw(st.sampled_from(EDGE_U8))
            elif field == "code":
                struct.pack_into("<H", data, start + 17, draw(st.sampled_from(EDGE_U16)))
            else:
                struct.pack_into("<I", data, start + 19, draw(st.sampled_from(EDGE_U32)))
    return bytes(data)


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    blob, offsets = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):  # a splice: the start of one stream, the end of another
        other, other_offsets = draw(st.sampled_from(SEEDS))
        cut = draw(st.sampled_from(offsets))
        resume = draw(st.sampled_from(other_offsets))
        blob = blob[:cut] + other[resume:]
        offsets = [o for o in offsets if o < cut] + [
            cut + o - resume for o in other_offsets if o >= resume
        ]
    for _ in range(draw(st.integers(1, 4))):
        blob = draw(mutation(blob, offsets))
    return blob


def next_event(parser: RequestParser) -> RequestEvent | NeedData | errors.ProtocolError:
    """The parser's next event, or the ``ProtocolError`` it raised (anything else escapes)."""
    try:
        return parser.next_event()
    except errors.ProtocolError as exc:
        return exc


def feed(stream: bytes, cuts: list[int]) -> int:
    """Parser and session over ``stream`` cut at ``cuts``; returns the events handled."""
    session = _server()
    parser = RequestParser(ParserLimits(max_packet_payload=1 << 20))
    points = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    handled = 0
    for start, end in itertools.pairwise(points):
        parser.receive_data(stream[start:end])
        while (event := next_event(parser)) is not NEED_DATA:
            if isinstance(event, errors.ProtocolError):
                # Only a framing error may escape: the driver answers 1607 and closes.
                assert isinstance(event, errors.FramingError) and event.fatal, repr(event)
                session.connection_lost()
                return handled
            handled += 1
            for effect in session.handle(event, float(handled)):  # must never raise
                if isinstance(effect, ss.Send | ss.Rejected):
                    effect.response.encode()
                if isinstance(effect, ss.Rejected):
                    assert not effect.error.fatal
            assert isinstance(session.state, ss.State)
    with contextlib.suppress(errors.TruncatedMessage):
        parser.receive_eof()
    session.connection_lost()
    return handled


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_the_seeds_are_valid_streams(index: int) -> None:
    """Unmutated, each seed runs to the end without a single rejection."""
    stream, _ = SEEDS[index]
    session, parser = _server(), RequestParser()
    parser.receive_data(stream)
    while (event := parser.next_event()) is not NEED_DATA:
        for effect in session.handle(event, 0.0):
            assert not isinstance(effect, ss.Rejected), effect
    parser.receive_eof()
    assert session.state is ss.State.READY


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream=mutated_stream(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_mutated_streams_never_crash_the_parser_or_the_session(
    stream: bytes, cuts: list[int]
) -> None:
    target(float(feed(stream, cuts)), label="events handled")
