"""The attack toolkit's GF(2) solver (attacks/eft_attacks/gf2.py), on its own: a subset
whose XOR is the target, the null space that gives every other one, no solution when
the target is outside the span — and, with cksum, a real CRC forged by flipping bits."""

from __future__ import annotations

import random
from functools import reduce

import pytest

from eft_attacks.gf2 import members, solutions, solve
from eft_protocol.cksum import cksum


def _xor(vectors: list[int], subset: int) -> int:
    return reduce(lambda a, i: a ^ vectors[i], members(subset), 0)


def test_a_solution_xors_to_the_target_and_every_solution_is_listed() -> None:
    vectors = [0b0011, 0b0101, 0b0110, 0b1000]  # the third is the XOR of the first two
    particular, null = solve(vectors, 0b1110)
    assert particular is not None and _xor(vectors, particular) == 0b1110
    assert null == [0b0111], "first two and the third cancel out"
    every = sorted(solutions(particular, null))
    assert len(every) == 2 and all(_xor(vectors, s) == 0b1110 for s in every)


def test_a_target_outside_the_span_has_no_solution() -> None:
    assert solve([0b01, 0b01], 0b10)[0] is None
    assert solve([], 0)[0] == 0, "the empty subset makes zero"


def test_too_many_solutions_are_refused() -> None:
    with pytest.raises(ValueError, match="too many"):
        next(solutions(0, [1] * 21))


def test_members_lists_the_set_bits() -> None:
    assert members(0b101001) == [0, 3, 5]
    assert members(0) == []


def test_flips_forging_a_wanted_cksum() -> None:
    message = bytearray(random.Random(8).randbytes(64))
    zeros = cksum(bytes(len(message)))

    def effect(bit: int) -> int:  # what flipping ``bit`` does to the CRC (it is linear)
        flipped = bytearray(len(message))
        flipped[bit // 8] = 1 << (bit % 8)
        return cksum(bytes(flipped)) ^ zeros

    wanted = 0xDEADBEEF
    bits = list(range(0, 64 * 8, 3))[:48]
    subset, _ = solve([effect(bit) for bit in bits], cksum(bytes(message)) ^ wanted)
    assert subset is not None
    for index in members(subset):
        message[bits[index] // 8] ^= 1 << (bits[index] % 8)
    assert cksum(bytes(message)) == wanted
