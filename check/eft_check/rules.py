"""The catalogue: every check and every known mistake, with the spec section it rests on.

``docs/CONFORMANCE.md`` is this file in prose; ``tests/check/test_catalogue.py`` keeps
the two in step. A *mistake* is a way real implementations get version 3 wrong that we
recognise by its bytes and name, so an implementer reads "each packet encrypted on its
own" rather than "1607".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    section: str  # in docs/PROTOCOL-v3.md
    title: str


@dataclass(frozen=True)
class Mistake:
    id: str
    section: str
    title: str


MISTAKES: dict[str, Mistake] = {
    m.id: m
    for m in (
        Mistake("per-packet-cbc", "§4", "each packet encrypted (and padded) on its own"),
        Mistake("swapped-packet-fields", "§2, §7", "total_packets and packet_number swapped"),
        Mistake("zero-based-packets", "§7", "packets numbered from 0"),
        Mistake("payload-size-mismatch", "§1", "payload_size does not match the bytes sent"),
        Mistake("no-packet-for-empty-file", "§2", "no 828 at all for an empty file"),
        Mistake("waits-for-901-answer", "§3.4", "waits for an answer to 901"),
        Mistake("waits-for-828-answer", "§3.1", "waits for an answer to each 828"),
        Mistake("answers-901", "§3.4, §7", "answers 901 (with 1604)"),
        Mistake("answers-each-828", "§3.1", "answers packets other than the last"),
        Mistake("plaintext-sizes", "§2", "plaintext sizes where the ciphertext's belong"),
        Mistake("empty-1604", "§2", "1604 without its client id"),
        Mistake("empty-1606", "§7", "1606 without its client id"),
        Mistake("1604-before-1603", "§3.1", "a 1604 before the 1603"),
        Mistake("one-recv", "§1", "reads a frame with one recv (no loop)"),
        Mistake("crc32-not-cksum", "§5", "zlib CRC-32 instead of POSIX cksum"),
        Mistake("refuses-path-name", "§7", "refuses a file name that holds a path"),
        Mistake("no-retry-after-1607", "§3.4", "does not resend after 1607"),
        Mistake("too-many-retries", "§3.4", "resends more than 3 times after 1607"),
    )
}


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


SERVER_CHECKS = _rules(
    Rule("register", "§2, §3.2", "825 is answered 1600 with a new non-zero 16-byte id"),
    Rule("duplicate-name", "§3.2", "825 with a registered name is answered 1601, empty"),
    Rule("public-key", "§4", "826 gets 1602: our id, an OAEP-SHA-1 key that unwraps to 32 B"),
    Rule("reconnect-known", "§3.2", "827 of a known client gets 1605 with a 32-byte key"),
    Rule("reconnect-unknown", "§3.2", "827 of an unknown id gets 1606 carrying that id"),
    Rule("file-0-bytes", "§2, §4", "an empty file: one 16-byte packet, 1603, 900, 1604"),
    Rule("file-1-byte", "§2, §4", "a 1-byte file"),
    Rule("file-15-bytes", "§2, §4", "a 15-byte file (one block with padding)"),
    Rule("file-16-bytes", "§2, §4", "a 16-byte file (a whole block of padding follows)"),
    Rule("file-17-bytes", "§2, §4", "a 17-byte file"),
    Rule("many-packets", "§2, §4", "a 64 KiB file in 64 packets, one CBC stream"),
    Rule("packet-size-1", "§2", "packets of 1 byte"),
    Rule("packet-size-100", "§2", "packets of 100 bytes (not block-aligned)"),
    Rule("packet-size-64k", "§2", "packets of 64 KiB"),
    Rule("packet-size-1m", "§2", "packets of 1 MiB"),
    Rule("split-writes", "§1", "a frame that arrives in many small writes"),
    Rule("coalesced-writes", "§1", "many frames in one write"),
    Rule("crc-901", "§3.4", "901 then the file again: no answer to 901, a new 1603"),
    Rule("crc-902", "§3.4", "three 901s, then 902 answered 1604"),
    Rule("unknown-file-900", "§3.2", "900 for a file never sent gets 1607, session goes on"),
    Rule("bad-requests", "§1, §3.5", "bad requests get 1607; the connection and others go on"),
    Rule("name-with-directory", "§7", "a file name holding a path is accepted and echoed"),
    Rule("long-name", "§1", "a 254-character file name is accepted and echoed"),
    Rule("two-clients", "§3.5", "two clients upload at once, interleaved"),
)

CLIENT_CHECKS = _rules(
    Rule("register", "§3.3, §6", "825, 826 with a 160-byte key, upload, 900; me.info/priv.key"),
    Rule("reconnect", "§3.3", "with me.info: 827 with the saved id, then the upload"),
    Rule("error-1607-once", "§3.4", "1607 once: the same request again, then success"),
    Rule("error-1607-four", "§3.4", "1607 four times: exactly 3 resends, then stop"),
    Rule("file-1607-once", "§3.4", "1607 after a file: the whole file again"),
    Rule("crc-wrong-once", "§3.4", "wrong cksum once: 901, the file again, 900"),
    Rule("crc-wrong-four", "§3.4", "wrong cksum always: 901, 901, 901, 902, then stop"),
    Rule("reconnect-denied", "§3.3", "1606: register anew, me.info rewritten"),
    Rule("name-taken", "§3.3", "1601: stop with an error, nothing more sent"),
    Rule("split-answers", "§1", "every answer in 1-byte writes"),
    Rule("coalesced-answers", "§1", "1604 for 901 and the next 1603 in one write"),
    Rule("slow-server", "§1", "every answer a while late"),
    Rule("empty-file", "§2, §4", "an empty file: one 828 of 16 bytes, orig size 0"),
    Rule("multi-packet", "§2, §4", "packets: numbering, sizes, one CBC stream"),
)
