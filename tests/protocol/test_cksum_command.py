"""Our ``Cksum`` against the system ``cksum`` command (spec section 6), on real files."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from eft_protocol.cksum import Cksum, cksum

pytestmark = pytest.mark.skipif(shutil.which("cksum") is None, reason="no cksum command")

SIZES = {"0B": 0, "1B": 1, "1MiB": 1 << 20, "20MiB": 20 << 20}
#: Uneven read sizes, none a multiple of another's alignment: a CRC that mishandles a
#: piece boundary, or the length suffix of a streamed file, shows up against ``cksum``.
PIECES = (1, 7, 4095, 65_537, 3, 1_000_003, 16, 255)


def system_cksum(path: Path) -> tuple[int, int]:
    result = subprocess.run(
        ["cksum", str(path)], capture_output=True, text=True, check=True, env={"LC_ALL": "C"}
    )
    crc, size, _name = result.stdout.split(maxsplit=2)
    return int(crc), int(size)


@pytest.fixture(scope="module", params=list(SIZES.values()), ids=list(SIZES))
def sample(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    size: int = request.param
    path = tmp_path_factory.mktemp("cksum") / f"random-{size}.bin"
    path.write_bytes(random.Random(size).randbytes(size))
    return path


def test_one_shot_matches_the_cksum_command(sample: Path) -> None:
    data = sample.read_bytes()
    expected, size = system_cksum(sample)
    assert size == len(data)
    assert cksum(data) == expected


def test_uneven_pieces_match_the_cksum_command(sample: Path) -> None:
    expected, size = system_cksum(sample)
    checksum = Cksum()
    with sample.open("rb") as handle:
        for piece in itertools.cycle(PIECES):
            chunk = handle.read(piece)
            if not chunk:
                break
            checksum.update(chunk)
    assert checksum.length == size
    assert checksum.value == expected


def test_memoryview_and_bytearray_pieces_match_the_cksum_command(sample: Path) -> None:
    expected, _ = system_cksum(sample)
    view = memoryview(sample.read_bytes())
    checksum = Cksum()
    offset = 0
    for index, piece in enumerate(itertools.cycle(PIECES)):
        if offset >= len(view):
            break
        part = view[offset : offset + piece]
        checksum.update(bytearray(part) if index % 2 else part)
        offset += len(part)
    assert checksum.value == expected


def test_value_can_be_read_midway_without_disturbing_the_sum(sample: Path) -> None:
    data = sample.read_bytes()
    expected, _ = system_cksum(sample)
    checksum = Cksum()
    half = len(data) // 2
    first_half = sample.with_name(f"{sample.name}.first-half")
    first_half.write_bytes(data[:half])
    checksum.update(data[:half])
    assert checksum.value == system_cksum(first_half)[0]
    checksum.update(data[half:])
    assert checksum.value == expected
    assert checksum.value == expected  # reading twice changes nothing


@pytest.mark.parametrize("size", [255, 256, 65_535, 65_536, 65_537])
def test_length_suffix_byte_boundaries_match_the_cksum_command(tmp_path: Path, size: int) -> None:
    # The length is appended in as few bytes as needed: these sizes change that count.
    path = tmp_path / "f.bin"
    path.write_bytes(random.Random(size).randbytes(size))
    assert cksum(path.read_bytes()) == system_cksum(path)[0]
