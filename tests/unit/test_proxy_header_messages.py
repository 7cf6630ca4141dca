"""The PROXY v2 header's refusals, message and all (they are what the log's detail
shows), the length bound's edge, and whose address a connection is counted under."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

import pytest

from eft_server import proxy_header
from eft_server.proxy_header import BadProxyHeader

SIG = proxy_header.SIGNATURE


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n", "invalid: no PROXY v2 signature"),
        (SIG + b"\x11\x11\x00\x0c" + bytes(12), "invalid: version 1, not 2"),
        (SIG + b"\x31\x11\x00\x0c" + bytes(12), "invalid: version 3, not 2"),
        (SIG + b"\x21\x11\x00\x0c" + bytes(11), "invalid: the length does not match the header"),
        (SIG + b"\x21\x11\x00\x0c" + bytes(13), "invalid: the length does not match the header"),
        (SIG + b"\x21\x12\x00\x0c" + bytes(12), "unsupported: not a stream (TCP) connection"),
        (SIG + b"\x21\x00\x00\x00", "unsupported: address family UNKNOWN"),
        (SIG + b"\x21\x31\x00\xd8" + bytes(216), "unsupported: address family UNIX"),
        (SIG + b"\x21\x11\x00\x04" + bytes(4), "invalid: unpack requires a buffer of 12 bytes"),
    ],
)
def test_each_refusal_says_why(header: bytes, message: str) -> None:
    with pytest.raises(BadProxyHeader) as refused:
        proxy_header.parse(header)
    assert str(refused.value) == message
    assert refused.value.reason == message.partition(":")[0]


def test_the_fixed_part_must_be_exactly_sixteen_bytes() -> None:
    whole = SIG + b"\x21\x11\x00\x0c"
    assert proxy_header.header_length(whole) == 12
    for wrong in (whole[:-1], whole + b"\x00"):
        with pytest.raises(BadProxyHeader, match=r"^invalid: no PROXY v2 signature$"):
            proxy_header.header_length(wrong)


def test_the_address_block_may_be_exactly_the_bound_not_one_byte_more() -> None:
    bound = proxy_header.MAX_ADDRESS_BLOCK
    fixed = SIG + b"\x21\x11" + struct.pack("!H", bound)
    assert proxy_header.header_length(fixed) == bound
    over = SIG + b"\x21\x11" + struct.pack("!H", bound + 1)
    with pytest.raises(BadProxyHeader) as refused:
        proxy_header.header_length(over)
    assert str(refused.value) == f"invalid: {bound + 1} bytes of addresses, above {bound}"
    # the length is big-endian: 0x0400 is the bound, 0x0004 four bytes
    assert proxy_header.header_length(SIG + b"\x21\x11\x00\x04") == 4


def test_a_header_up_to_the_bound_is_parsed_with_its_tlvs() -> None:
    block = bytes([192, 0, 2, 1, 127, 0, 0, 1]) + struct.pack("!HH", 9, 1256)
    padding = proxy_header.MAX_ADDRESS_BLOCK - len(block) - 3  # one NOOP TLV (0x04) to the end
    block += b"\x04" + struct.pack("!H", padding) + bytes(padding)
    header = SIG + b"\x21\x11" + struct.pack("!H", len(block)) + block
    assert proxy_header.parse(header).source == ("192.0.2.1", 9)


class _Writer:
    def __init__(self, peername: object) -> None:
        self.peername = peername

    def get_extra_info(self, name: str) -> object:
        return self.peername if name == "peername" else None


def test_the_peer_is_the_headers_address_else_the_sockets() -> None:
    writer = cast(Any, _Writer(("10.0.0.1", 5000)))

    def inside(source: tuple[str, int] | None) -> object:
        proxy_header.proxied_source.set(source)
        return proxy_header.peer_of(writer)

    assert proxy_header.peer_of(writer) == ("10.0.0.1", 5000)
    assert asyncio.run(_in_task(inside, ("192.0.2.7", 40000))) == ("192.0.2.7", 40000)
    assert asyncio.run(_in_task(inside, None)) == ("10.0.0.1", 5000)
    assert proxy_header.proxied_source.get() is None, "set inside a task only"


async def _in_task(function: Any, argument: object) -> object:
    return function(argument)


# 192.0.2.7:4242 -> 127.0.0.1:1256 over TCP, with a CRC32C TLV (type 3, 4 bytes) over the
# whole header, as HAProxy sends it with `proxy-v2-options crc32c`.
WITH_CRC32C = bytes.fromhex(
    "0d0a0d0a000d0a515549540a21110013c00002077f000001109204e80300040317b672"
)


def test_a_right_crc32c_is_accepted_and_a_wrong_one_refused() -> None:
    assert proxy_header.parse(WITH_CRC32C) == proxy_header.ProxiedPeer(("192.0.2.7", 4242))
    wrong = WITH_CRC32C[:-1] + bytes([WITH_CRC32C[-1] ^ 1])
    with pytest.raises(BadProxyHeader) as refused:
        proxy_header.parse(wrong)
    assert str(refused.value) == "invalid: CRC32C TLV does not match"
