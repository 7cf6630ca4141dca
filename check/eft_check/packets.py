"""One attempt at a file as a client under test sent it, judged against spec §2 and §4.

The packets are kept as they came; ``Attempt.judge`` then works out how they were
numbered (from 1, from 0, fields swapped), whether the sizes describe the whole file's
ciphertext, and whether the content is one CBC stream or packets encrypted one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eft_protocol import crypto
from eft_protocol.cksum import cksum
from eft_protocol.codes import padded_size

from .report import Finding, deviation, fail


@dataclass(frozen=True)
class Packet:
    content_size: int
    orig_size: int
    number_field: int  # the field where packet_number belongs
    total_field: int  # the field where total_packets belongs
    raw_name: bytes
    content: bytes


@dataclass
class Judged:
    findings: list[Finding]
    cksum: int
    received: int
    name: str


@dataclass
class Attempt:
    packets: list[Packet] = field(default_factory=list)

    def add(self, packet: Packet) -> None:
        self.packets.append(packet)

    @property
    def swapped(self) -> bool:
        """The first packet says "number N of 1": the fields are the other way round."""
        first = self.packets[0]
        return first.number_field > first.total_field

    @property
    def zero_based(self) -> bool:
        return self.packets[0].number_field == 0 and not self.swapped

    def numbers(self, packet: Packet) -> tuple[int, int]:
        """(packet number from 1, total) as the sender meant them."""
        number, total = packet.number_field, packet.total_field
        if self.swapped:
            number, total = total, number
        if self.zero_based:
            number += 1
        return number, total

    @property
    def complete(self) -> bool:
        if not self.packets:
            return False
        number, total = self.numbers(self.packets[-1])
        return number >= total

    def judge(self, aes_key: bytes, expected: bytes) -> Judged:
        findings: list[Finding] = []
        if self.swapped:
            findings.append(
                deviation(
                    "packet_number at offset 8, total_packets at 10",
                    f"first packet {self.packets[0].number_field} of {self.packets[0].total_field}",
                    "swapped-packet-fields",
                )
            )
        if self.zero_based:
            findings.append(
                deviation("packets numbered 1…total", "the first one is 0", "zero-based-packets")
            )
        numbering = [self.numbers(p) for p in self.packets]
        total = numbering[0][1]
        if numbering != [(k, total) for k in range(1, len(self.packets) + 1)]:
            findings.append(fail(f"packets 1…{total} of {total}, in order", f"{numbering[:8]}"))
        ciphertext = b"".join(p.content for p in self.packets)
        first = self.packets[0]
        want_size = padded_size(len(expected))
        if first.orig_size != len(expected):
            findings.append(fail(f"orig_file_size {len(expected)}", f"{first.orig_size}"))
        sizes = {p.content_size for p in self.packets}
        if sizes != {want_size}:
            mistake = "plaintext-sizes" if sizes == {len(expected)} else None
            findings.append(
                deviation(
                    f"content_size {want_size} (the whole file's ciphertext) in every packet",
                    f"{sorted(sizes)[:8]}",
                    mistake,
                )
            )
        plaintext = _decrypt(aes_key, ciphertext)
        if plaintext != expected:
            pieces = [_decrypt(aes_key, p.content) for p in self.packets]
            if len(self.packets) > 1 and all(x is not None for x in pieces):
                joined = b"".join(x for x in pieces if x is not None)
                mistake = "per-packet-cbc" if joined == expected else None
                findings.append(
                    fail(
                        "one AES-CBC stream over the whole file, padded once at its end",
                        f"{len(self.packets)} packets each padded and decryptable alone",
                        mistake,
                    )
                )
                plaintext = joined
            else:
                findings.append(
                    fail(
                        "the file, encrypted with the session's AES key (zero IV, PKCS#7)",
                        "ciphertext that does not decrypt to it",
                    )
                )
        return Judged(findings, cksum(plaintext or b""), len(ciphertext), _name(first.raw_name))


def _decrypt(aes_key: bytes, ciphertext: bytes) -> bytes | None:
    try:
        return crypto.decrypt_file_bytes(aes_key, ciphertext)
    except Exception:  # bad length or padding: not what we test here
        return None


def _name(raw: bytes) -> str:
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)[:254] or "?"
