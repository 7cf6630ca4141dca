"""The whole-file digest's pieces (``eft_protocol.v4.file_digest``) and the first
header's routing (``eft_protocol.versions``): small, and each word of them is read by
another program (the registry's labels, the refusal's message, the listener)."""

from __future__ import annotations

import hashlib

import pytest
from blake3 import blake3

from eft_protocol.v4.file_digest import (
    DIGEST_SIZE,
    DigestAlgorithm,
    algorithm_label,
    file_digest,
    hasher_for,
)
from eft_protocol.versions import VERSION_OFFSET, Route, route


def test_the_algorithms_numbers_and_labels() -> None:
    assert (DigestAlgorithm.BLAKE3, DigestAlgorithm.SHA256) == (1, 2)
    assert algorithm_label(1) == "blake3"
    assert algorithm_label(2) == "sha256"
    with pytest.raises(ValueError, match="3"):
        algorithm_label(3)


def test_each_hasher_is_its_algorithm() -> None:
    data = b"the quick brown fox"
    assert hasher_for(1).digest() == blake3(b"").digest()
    blake, sha = hasher_for(DigestAlgorithm.BLAKE3), hasher_for(DigestAlgorithm.SHA256)
    blake.update(data)
    sha.update(data)
    assert blake.digest() == blake3(data).digest() == file_digest(data).digest()
    assert sha.digest() == hashlib.sha256(data).digest()
    assert len(blake.digest()) == len(sha.digest()) == DIGEST_SIZE == 32


def test_an_unknown_algorithm_is_refused_by_number() -> None:
    with pytest.raises(ValueError, match=r"^unknown digest algorithm 9$"):
        hasher_for(9)


def _header(version: int) -> bytes:
    return bytes(16) + bytes([version]) + bytes(6)


@pytest.mark.parametrize("legacy", ["allow", "deny"])
def test_version_4_is_routed_to_version_4_whatever_the_setting(legacy: str) -> None:
    assert VERSION_OFFSET == 16
    assert route(_header(4), legacy) is Route.VERSION_4


@pytest.mark.parametrize("version", [3, 0, 5, 255])
def test_anything_else_is_version_3_when_allowed_and_refused_when_denied(version: int) -> None:
    assert route(_header(version), "allow") is Route.VERSION_3
    assert route(_header(version), "deny") is Route.REFUSED
    assert route(bytes(15) + b"\x04" + bytes([version]) + bytes(6), "deny") is Route.REFUSED


def test_only_a_whole_header_is_routed() -> None:
    with pytest.raises(AssertionError):
        route(_header(4)[:22], "allow")
    assert [r.value for r in Route] == [3, 4, 0]
