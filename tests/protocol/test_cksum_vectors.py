"""``eft_protocol.cksum`` against values printed by the POSIX ``cksum`` command.

Every expected value is a constant pasted from ``cksum`` (GNU coreutils), so these run
where no ``cksum`` command is installed, and none compares the code with itself.
``test_cksum_command.py`` checks random files against the command where it exists.
"""

from __future__ import annotations

import pytest

from eft_protocol.cksum import Cksum, cksum


def counting(size: int) -> bytes:
    """Byte i is i mod 256. Zeros would not do: a CRC that starts at 0 ignores leading
    zero bytes, so 1, 256 and 65536 zero bytes all have one sum."""
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


#: ``python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 256 for i in range(N)))' | cksum``
#: The lengths where the appended length grows a byte (0 -> 1 -> 2 -> 3 bytes) and each
#: side of a byte's high bit (127/128, 255/256, 65535/65536).
COUNTING_VECTORS = {
    0: 4294967295,
    1: 4215202376,
    127: 2521277696,
    128: 2697320073,
    255: 1407940826,
    256: 1313719201,
    65535: 3979200550,
    65536: 3547434670,
}

#: ``head -c 4294967295 /dev/zero | cksum``: the largest size a version-3 packet field holds.
ZEROS_2_32_MINUS_1 = 955982468


@pytest.mark.parametrize(("size", "expected"), COUNTING_VECTORS.items(), ids=str)
def test_one_shot_at_length_boundaries(size: int, expected: int) -> None:
    assert cksum(counting(size)) == expected


@pytest.mark.parametrize(("size", "expected"), COUNTING_VECTORS.items(), ids=str)
def test_streamed_byte_by_byte_and_in_uneven_pieces(size: int, expected: int) -> None:
    data = counting(size)
    for piece in (1, 7, 100):
        checksum = Cksum()
        for start in range(0, size, piece):
            checksum.update(data[start : start + piece])
        assert checksum.length == size
        assert checksum.value == expected


def test_reading_the_value_midway_gives_the_prefix_sum_and_changes_nothing() -> None:
    checksum = Cksum()
    checksum.update(b"hello ")
    assert checksum.value == 3114746090  # printf 'hello ' | cksum
    checksum.update(bytearray(b"world"))
    checksum.update(memoryview(b"\n"))
    assert checksum.value == 3733384285  # printf 'hello world\n' | cksum
    assert checksum.value == 3733384285
    assert checksum.length == 12


def test_a_fresh_sum_is_the_empty_files() -> None:
    checksum = Cksum()
    assert (checksum.value, checksum.length) == (4294967295, 0)


def test_2_32_minus_1_zero_bytes_streamed() -> None:
    # A second or less with fastcrc's vectorised CRC: 256 pieces of 16 MiB, the last short.
    zeros = memoryview(bytes(1 << 24))
    checksum = Cksum()
    left = 2**32 - 1
    while left:
        piece = min(left, len(zeros))
        checksum.update(zeros[:piece])
        left -= piece
    assert checksum.length == 2**32 - 1
    assert checksum.value == ZEROS_2_32_MINUS_1
