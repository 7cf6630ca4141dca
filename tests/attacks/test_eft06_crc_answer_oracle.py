"""EFT-06's old advice, "answer bad padding with a 1603 carrying the CRC of the raw
decrypted bytes", tested against a server that follows it: its answers decrypt a captured
file block by block (attacks/eft_attacks/crc_answer_oracle.py). Version 4 has no such
answer: every failed record closes the connection with no byte sent
(test_eft06_padding_oracle.py's [v4] cases)."""

from __future__ import annotations

import pytest
from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes

from eft_attacks.crc_answer_oracle import ZERO_IV, fitting_block, read_blocks
from eft_attacks.crc_recover import recover
from eft_protocol.cksum import cksum
from eft_protocol.crypto import encrypt_file_bytes

SECRET = b"code-a: 4719305\ncode-b: 8820146\ncode-c: 3357912\n"
PATTERN = b"code-a: #######\ncode-b: #######\ncode-c: #######\n"


class AdvisedServer:
    """What the recommendation asked a server to do with an attempt whose padding is bad
    (and, for good padding, what every version-3 server does with the unpadded bytes)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.queries = 0

    def answer(self, ciphertext: bytes) -> int:
        self.queries += 1
        raw = AES.new(self._key, AES.MODE_CBC, iv=ZERO_IV).decrypt(ciphertext)
        padding = raw[-1]
        if 1 <= padding <= 16 and raw.endswith(bytes([padding]) * padding):
            return cksum(raw[:-padding])  # a valid file: the CRC of its content
        return cksum(raw)  # the advice: the CRC of the raw decrypted bytes


def test_the_advised_crc_answer_decrypts_a_captured_file_block_by_block() -> None:
    key = get_random_bytes(32)
    captured = encrypt_file_bytes(key, SECRET)  # what A1 recorded of the 828
    server = AdvisedServer(key)

    # A single block is never validly padded by chance here: each answer is the advice's.
    found = read_blocks(captured, PATTERN, server.answer)

    assert [len(candidates) for candidates in found[:3]] == [1, 1, 1]
    assert b"".join(candidates[0] for candidates in found[:3]) == SECRET
    assert server.queries == len(captured) // 16  # one query a block
    # What the file's own 1603 gives (EFT-08) cannot do it: 21 unknown digits are ~70
    # bits, and 32 equations for the whole file leave billions of fitting plaintexts.
    assert len(PATTERN) - len(PATTERN.replace(b"#", b"")) == 21
    with pytest.raises(ValueError, match="too many"):
        recover(PATTERN, cksum(SECRET))


def _raw_answer(decrypted: bytes, block: bytes, copies: int) -> int:
    """The advised answer to ``block`` sent ``copies`` times, from ``D(block)``: the
    first copy decrypts to D (zero IV), each later one to D ^ block."""
    masked = bytes(a ^ b for a, b in zip(decrypted, block, strict=True))
    return cksum(decrypted + masked * (copies - 1))


def test_sending_a_block_again_adds_no_equation() -> None:
    """Why the bound is 32 bits a block: every answer about D = D(C_i) depends on D only
    modulo the CRC polynomial, so a D that differs by the polynomial itself answers
    alike to one, two, three and four copies (the issue's "one to four times")."""
    block, decrypted = get_random_bytes(16), get_random_bytes(16)
    key = get_random_bytes(32)
    assert AdvisedServer(key).answer(block) == cksum(AES.new(key, AES.MODE_ECB).decrypt(block))
    polynomial = (1 << 32) | 0x04C11DB7  # CRC-32's, as cksum uses it
    twin = (int.from_bytes(decrypted, "big") ^ polynomial).to_bytes(16, "big")
    assert twin != decrypted
    for copies in range(1, 5):
        assert _raw_answer(twin, block, copies) == _raw_answer(decrypted, block, copies)


def test_a_block_that_decrypts_to_a_valid_padding_by_chance_is_read_too() -> None:
    """About one block in 256: the server then answers as for a file, the CRC of the
    bytes before the padding; the attack tries that reading as well."""
    plaintext, pattern = SECRET[:16], PATTERN[:16]
    decrypted = get_random_bytes(15) + b"\x01"  # D(C_i) ends in a valid padding
    previous = bytes(a ^ b for a, b in zip(plaintext, decrypted, strict=True))
    assert fitting_block(pattern, previous, cksum(decrypted[:-1])) == [plaintext]
    assert fitting_block(pattern, previous, cksum(decrypted)) == [plaintext]
