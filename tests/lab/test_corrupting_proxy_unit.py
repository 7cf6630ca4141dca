"""The lab's corrupting proxy (lab/eft_lab/corrupting_proxy.py) on its own: it follows
version 3's framing whatever the pieces the bytes come in, flips exactly one bit of the
first content byte of a file attempt it is told to, and nothing else; its policies; and
the proxy itself over loopback, in process, in front of a recording target."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from eft_lab.corrupting_proxy import CorruptingProxy, StreamCorrupter, main, policy
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, RequestCode


def _frame(code: int, payload: bytes) -> bytes:
    return REQUEST_HEADER.pack(bytes(16), 3, code, len(payload)) + payload


def _packet(number: int, total: int, content: bytes) -> bytes:
    fields = PACKET_FIELDS.pack(len(content), len(content) * total, number, total, b"f.txt")
    return _frame(RequestCode.SEND_FILE, fields + content)


CONTENT = bytes(range(1, 33))
STREAM = (
    _frame(RequestCode.REGISTER, b"n" * 255)
    + _frame(900, b"")  # no payload at all
    + _packet(1, 2, CONTENT)
    + _packet(2, 2, CONTENT)
)
FIRST_CONTENT = len(_frame(RequestCode.REGISTER, b"n" * 255)) + len(_frame(900, b""))
FIRST_CONTENT += REQUEST_HEADER.size + PACKET_FIELDS.size


def _feed(corrupter: StreamCorrupter, data: bytes, piece: int) -> bytes:
    return b"".join(corrupter.feed(data[i : i + piece]) for i in range(0, len(data), piece))


@pytest.mark.parametrize("piece", [1, 7, 300, len(STREAM)])
def test_one_bit_of_the_first_packets_content_is_flipped(piece: int) -> None:
    corrupter = StreamCorrupter(lambda: True)
    out = _feed(corrupter, STREAM, piece)
    differences = [i for i, (a, b) in enumerate(zip(STREAM, out, strict=True)) if a != b]
    assert differences == [FIRST_CONTENT]
    assert out[FIRST_CONTENT] == STREAM[FIRST_CONTENT] ^ 0x01
    assert corrupter.corrupted_attempts == 1


def test_nothing_changes_when_told_not_to() -> None:
    asked: list[bool] = []

    def never() -> bool:
        asked.append(False)
        return False

    corrupter = StreamCorrupter(never)
    assert _feed(corrupter, STREAM * 2, 5) == STREAM * 2
    assert len(asked) == 2, "asked once per file attempt, not per packet"


def test_zero_based_packet_numbers_count_as_the_first() -> None:
    corrupter = StreamCorrupter(lambda: True)
    out = corrupter.feed(_packet(0, 1, CONTENT))
    assert out != _packet(0, 1, CONTENT) and corrupter.corrupted_attempts == 1


def test_the_policies() -> None:
    once = policy("once")
    assert [once(), once(), once()] == [True, False, False]
    assert policy("always")() and not policy("never")()
    rate = policy("0.25", random.Random(1))
    hits = sum(rate() for _ in range(400))
    reference = random.Random(1)
    assert hits == sum(reference.random() < 0.25 for _ in range(400))
    assert 0 < hits < 400
    assert not any(policy("0")() for _ in range(50))
    for bad in ("1.5", "-0.1", "sometimes"):
        with pytest.raises(ValueError):
            policy(bad)


def test_a_bad_corrupt_flag_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--target", "127.0.0.1:1", "--corrupt", "sometimes"])
    assert stopped.value.code == 2


async def _through_proxy(cut_after: int | None) -> tuple[list[bytes], int]:
    arrived: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    accepted = 0

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        number, accepted = accepted, accepted + 1
        try:
            arrived.put_nowait((number, await reader.read(-1)))  # until the client's end
        except ConnectionError:  # the cut: an abort may arrive as a reset
            arrived.put_nowait((number, b""))
        writer.close()

    upstream = await asyncio.start_server(target, "127.0.0.1", 0)
    target_port = upstream.sockets[0].getsockname()[1]
    proxy = CorruptingProxy("127.0.0.1", target_port, "once", cut_after=cut_after)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.suppress(ConnectionError):  # a cut connection is reset
            writer.write(STREAM)
            await writer.drain()
            writer.write_eof()
            await reader.read(-1)  # the proxy closes once the target has
        writer.close()
    # What each connection brought, in the order they were made.
    received = [data for _, data in sorted([await arrived.get(), await arrived.get()])]
    server.close()
    upstream.close()
    await server.wait_closed()
    await upstream.wait_closed()
    return received, proxy.corrupted_attempts


def test_the_proxy_corrupts_once_across_connections() -> None:
    received, corrupted = asyncio.run(_through_proxy(None))
    assert corrupted == 1
    assert len(received) == 2
    assert received[0] != STREAM and received[0][FIRST_CONTENT] == STREAM[FIRST_CONTENT] ^ 1
    assert received[1] == STREAM, "once means once for the whole proxy"


def test_the_proxy_cuts_only_the_first_connection() -> None:
    received, _ = asyncio.run(_through_proxy(10))
    assert len(received) == 2
    # The piece that crosses the limit is not forwarded: the target got nothing.
    assert received[0] == b""
    assert len(received[1]) == len(STREAM)
