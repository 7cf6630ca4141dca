"""How the server keys a source address for cookies and the per-address DH rate."""

from __future__ import annotations

from eft_server.connection_v4 import address_key


def test_ipv4_as_is_and_when_mapped_into_ipv6() -> None:
    assert address_key(("127.0.0.3", 4000)) == bytes([127, 0, 0, 3])
    assert address_key(("::ffff:127.0.0.3", 4000, 0, 0)) == bytes([127, 0, 0, 3])


def test_ipv6_by_its_slash_64() -> None:
    one = address_key(("2001:db8:1:2::1", 4000, 0, 0))
    other_host_same_64 = address_key(("2001:db8:1:2:ffff::9", 4000, 0, 0))
    assert one == other_host_same_64 == bytes.fromhex("20010db800010002")
    assert address_key(("2001:db8:1:3::1", 4000, 0, 0)) != one


def test_an_unknown_peer_has_no_key() -> None:
    assert address_key(None) == b""
    assert address_key(("not an address", 1)) == b""
