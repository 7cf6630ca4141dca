"""Why EFT-06's old recommendation was wrong: a 1603 for bad padding that carries the CRC
of the raw decrypted bytes is a decryption oracle of its own.

No server of ours answers so; this is the attack on one that followed the advice. Such a
server decrypts whatever "file" it is sent under the session's key and answers with
``cksum`` of the result. Send one captured block ``C_i`` alone: with the zero IV it
decrypts to ``D(C_i)``, and ``P_i = D(C_i) ^ C_(i-1)``. cksum is affine for one length
(``cksum(a ^ b) == cksum(a) ^ cksum(b) ^ cksum(zeros)``), so the answer gives
``cksum(P_i)``: 32 linear equations on each block of plaintext, chosen block by chosen
block. The file's own 1603 (EFT-08) gives 32 equations for the whole file; this gives 32
for every 16 bytes, so any block with fewer than about 32 unknown bits (digits, a PIN,
a code in a known template) is read exactly, however long the file.

Sending the same block several times, or at other offsets, adds nothing: each answer is
a linear function of ``D(C_i)`` through multiplication modulo the CRC polynomial, so all
of them together reveal ``D(C_i) mod G``, 32 bits. That bound is what makes this oracle
weaker than the padding oracle (which reads every byte), not harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from eft_protocol.cksum import cksum

from .crc_recover import recover

BLOCK = 16
ZERO_IV = bytes(BLOCK)

#: What the hypothetical server answers to a "file" (CBC ciphertext): the cksum of its
#: decryption under the session key, padding or not.
CrcAnswer = Callable[[bytes], int]


def padded_pattern(pattern: bytes) -> bytes:
    """The pattern of the whole padded plaintext: PKCS#7 padding is known from the size."""
    pad = BLOCK - len(pattern) % BLOCK
    return pattern + bytes([pad]) * pad


def read_blocks(ciphertext: bytes, pattern: bytes, ask: CrcAnswer) -> list[list[bytes]]:
    """For each block of a captured file: the plaintexts that fit the pattern (``#`` an
    unknown digit, ``?`` an unknown byte) and the server's answer. One query a block."""
    full = padded_pattern(pattern)
    if len(full) != len(ciphertext):
        raise ValueError("the pattern does not have the captured file's size")
    found = []
    for start in range(0, len(ciphertext), BLOCK):
        block = ciphertext[start : start + BLOCK]
        previous = ciphertext[start - BLOCK : start] if start else ZERO_IV
        answer = ask(block)
        found.append(fitting_block(full[start : start + BLOCK], previous, answer))
    return found


def fitting_block(pattern: bytes, previous: bytes, answer: int) -> list[bytes]:
    """Plaintexts ``P`` of one block that fit ``pattern`` and the answer. Mostly the
    answer is ``cksum(D)``, ``D = P ^ previous``; but one block in about 256 decrypts to
    a valid padding of ``n`` bytes by chance, and then the server answers as for a file,
    ``cksum(D[:-n])``, with the last ``n`` bytes of D equal to ``n``. Every hypothesis is
    tried: a wrong one fits by chance once in 2^32."""
    found = []
    for pad in range(BLOCK):  # 0: the advised raw answer; n: a valid padding of n
        keep = BLOCK - pad
        tail = bytes(pad ^ previous[j] for j in range(keep, BLOCK)) if pad else b""
        if not all(_allows(pattern[keep + j], tail[j]) for j in range(pad)):
            continue  # the pattern rules this padding out
        crc = answer ^ cksum(previous[:keep]) ^ cksum(bytes(keep))
        found += [head + tail for head in recover(pattern[:keep], crc)]
    return found


def _allows(pattern_byte: int, byte: int) -> bool:
    if pattern_byte == ord("#"):
        return ord("0") <= byte <= ord("9")
    return pattern_byte in (byte, ord("?"))
