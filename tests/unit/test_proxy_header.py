"""The PROXY v2 header on --proxy-port: headers laid out by hand from the specification
(haproxy.org/download/2.6/doc/proxy-protocol.txt, section 2.2), accepted or refused."""

from __future__ import annotations

import asyncio
import struct

import pytest

from eft_server import proxy_header
from eft_server.proxy_header import BadProxyHeader, ProxiedPeer

SIG = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"  # the spec's 12 bytes


def tcp4(source: str, sport: int, dest: str = "127.0.0.1", dport: int = 1256) -> bytes:
    block = (
        bytes(int(x) for x in source.split("."))
        + bytes(int(x) for x in dest.split("."))
        + struct.pack("!HH", sport, dport)
    )
    return SIG + b"\x21\x11" + struct.pack("!H", len(block)) + block


def test_spec_signature() -> None:
    assert proxy_header.SIGNATURE == SIG


def test_tcp4_gives_the_clients_address() -> None:
    assert proxy_header.parse(tcp4("192.0.2.7", 40000)) == ProxiedPeer(("192.0.2.7", 40000))


def test_tcp6_gives_the_clients_address() -> None:
    source = bytes.fromhex("20010db8000000000000000000000001")
    block = source + bytes(15) + b"\x01" + struct.pack("!HH", 5555, 1256)
    header = SIG + b"\x21\x21" + struct.pack("!H", len(block)) + block
    assert proxy_header.parse(header) == ProxiedPeer(("2001:db8::1", 5555))


def test_tlvs_after_the_addresses_are_skipped() -> None:
    # HAProxy may add TLVs (here PP2_TYPE_UNIQUE_ID, 0x05): the length covers them.
    header = tcp4("198.51.100.1", 1)
    tlv = b"\x05" + struct.pack("!H", 4) + b"abcd"
    header = header[:14] + struct.pack("!H", 12 + len(tlv)) + header[16:] + tlv
    assert proxy_header.parse(header).source == ("198.51.100.1", 1)


def test_local_is_a_health_check() -> None:
    # LOCAL (command 0), family UNSPEC, no addresses: HAProxy's check connections.
    peer = proxy_header.parse(SIG + b"\x20\x00\x00\x00")
    assert peer.local and peer.source is None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n", "invalid"),  # v1 is not accepted
        (b"\x16\x03\x01" + bytes(13), "invalid"),  # anything else
        (SIG + b"\x11\x11\x00\x0c" + bytes(12), "invalid"),  # version 1 in the binary form
        (SIG + b"\x22\x11\x00\x0c" + bytes(12), "invalid"),  # command 2 does not exist
        (SIG + b"\x21\x11\x00\x04" + bytes(4), "invalid"),  # TCP4 with 4 bytes of addresses
        (SIG + b"\x21\x12\x00\x0c" + bytes(12), "unsupported"),  # UDP over IPv4
        (SIG + b"\x21\x00\x00\x00", "unsupported"),  # PROXY with UNSPEC: no address
        (SIG + b"\x21\x31\x00\xd8" + bytes(216), "unsupported"),  # a UNIX address
    ],
)
def test_refused(header: bytes, reason: str) -> None:
    with pytest.raises(BadProxyHeader) as refused:
        proxy_header.parse(header)
    assert refused.value.reason == reason


def test_a_long_claim_is_refused_before_it_is_read() -> None:
    fixed = SIG + b"\x21\x11" + struct.pack("!H", proxy_header.MAX_ADDRESS_BLOCK + 1)
    with pytest.raises(BadProxyHeader):
        proxy_header.header_length(fixed)


def test_read_leaves_the_protocol_bytes_after_it() -> None:
    async def scenario() -> tuple[ProxiedPeer, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(tcp4("203.0.113.9", 7) + b"\x00\x03eft")
        reader.feed_eof()
        peer = await proxy_header.read(reader)
        return peer, await reader.read()

    peer, rest = asyncio.run(scenario())
    assert peer.source == ("203.0.113.9", 7)
    assert rest == b"\x00\x03eft"
