"""The checker's judgement of one file attempt (check/eft_check/packets.py), on its own:
a correct attempt has no finding and the file's cksum; each known mistake of a client
under test — fields swapped, numbered from 0, plaintext sizes, each packet encrypted
alone, the wrong key — is named; a name is made printable."""

from __future__ import annotations

from eft_check.packets import Attempt, Packet
from eft_protocol import crypto
from eft_protocol.cksum import cksum

KEY = bytes(range(32))
DATA = bytes(range(256)) * 3  # 768 bytes: 784 of ciphertext


def _attempt(
    pieces: list[bytes],
    *,
    numbers: list[tuple[int, int]] | None = None,
    content_size: int | None = None,
    name: bytes = b"f.txt\0",
) -> Attempt:
    total = len(pieces)
    numbers = numbers or [(k, total) for k in range(1, total + 1)]
    size = content_size if content_size is not None else sum(map(len, pieces))
    attempt = Attempt()
    for (number, count), content in zip(numbers, pieces, strict=True):
        attempt.add(Packet(size, len(DATA), number, count, name, content))
    return attempt


def _split(ciphertext: bytes, parts: int) -> list[bytes]:
    step = -(-len(ciphertext) // parts)
    return [ciphertext[i : i + step] for i in range(0, len(ciphertext), step)]


def _mistakes(attempt: Attempt, key: bytes = KEY) -> list[str | None]:
    return [finding.mistake for finding in attempt.judge(key, DATA).findings]


def test_a_correct_attempt_has_no_finding() -> None:
    attempt = _attempt(_split(crypto.encrypt_file_bytes(KEY, DATA), 3))
    judged = attempt.judge(KEY, DATA)
    assert judged.findings == []
    assert (judged.cksum, judged.received, judged.name) == (cksum(DATA), 784, "f.txt")
    assert attempt.complete


def test_numbering_from_zero_and_swapped_fields_are_deviations() -> None:
    pieces = _split(crypto.encrypt_file_bytes(KEY, DATA), 2)
    zero = _attempt(pieces, numbers=[(0, 2), (1, 2)])
    assert zero.zero_based and _mistakes(zero) == ["zero-based-packets"]
    swapped = _attempt(pieces, numbers=[(2, 1), (2, 2)])
    assert swapped.swapped and _mistakes(swapped) == ["swapped-packet-fields"]
    assert zero.complete and swapped.complete


def test_packets_out_of_order_fail() -> None:
    pieces = _split(crypto.encrypt_file_bytes(KEY, DATA), 3)
    attempt = _attempt(pieces, numbers=[(1, 3), (3, 3), (2, 3)])
    findings = attempt.judge(KEY, DATA).findings
    assert any("in order" in finding.expected for finding in findings)


def test_plaintext_sizes_and_per_packet_encryption_are_named() -> None:
    halves = [DATA[:400], DATA[400:]]
    alone = [crypto.encrypt_file_bytes(KEY, half) for half in halves]
    attempt = _attempt(alone, content_size=len(DATA))
    assert _mistakes(attempt) == ["plaintext-sizes", "per-packet-cbc"]


def test_the_wrong_key_is_a_failure_without_a_named_mistake() -> None:
    attempt = _attempt([crypto.encrypt_file_bytes(bytes(32), DATA)])
    findings = attempt.judge(KEY, DATA).findings
    assert [finding.mistake for finding in findings] == [None]
    assert "does not decrypt" in findings[0].got


def test_a_name_is_made_printable_and_an_empty_attempt_is_not_complete() -> None:
    attempt = _attempt([crypto.encrypt_file_bytes(KEY, DATA)], name=b"a\x01b\xff\0junk")
    assert attempt.judge(KEY, DATA).name == "a?b?"
    assert not Attempt().complete
