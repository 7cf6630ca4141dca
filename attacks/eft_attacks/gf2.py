"""Linear algebra over GF(2) on Python ints: what makes a CRC forgeable.

CRC-32 is linear: for messages of one length, ``cksum(a ^ b) == cksum(a) ^ cksum(b) ^
cksum(zeros)``. So the effect of flipping a set of bits on the CRC is the XOR of the
effects of the single flips, and finding which flips produce a wanted CRC change is
solving a linear system: Gaussian elimination on 32-bit vectors.
"""

from __future__ import annotations

from collections.abc import Iterator


def solve(vectors: list[int], target: int) -> tuple[int | None, list[int]]:
    """A subset of ``vectors`` (as a bit mask) whose XOR is ``target``, or None; and a
    basis of the subsets whose XOR is zero (every other solution adds some of them)."""
    basis: dict[int, tuple[int, int]] = {}  # leading bit -> (vector, subset mask)
    null: list[int] = []
    for index, original in enumerate(vectors):
        vector, subset = original, 1 << index
        while vector:
            top = vector.bit_length() - 1
            if top not in basis:
                basis[top] = (vector, subset)
                break
            vector ^= basis[top][0]
            subset ^= basis[top][1]
        else:
            null.append(subset)
    subset = 0
    while target:
        top = target.bit_length() - 1
        if top not in basis:
            return None, null
        target ^= basis[top][0]
        subset ^= basis[top][1]
    return subset, null


def solutions(particular: int, null: list[int], limit: int = 1 << 20) -> Iterator[int]:
    """Every solution: the particular one plus each combination of the null basis."""
    if len(null) > limit.bit_length() - 1:
        raise ValueError(f"{2 ** len(null)} solutions: too many to list")
    for combination in range(1 << len(null)):
        subset = particular
        for bit, extra in enumerate(null):
            if combination >> bit & 1:
                subset ^= extra
        yield subset


def members(subset: int) -> list[int]:
    return [i for i in range(subset.bit_length()) if subset >> i & 1]
