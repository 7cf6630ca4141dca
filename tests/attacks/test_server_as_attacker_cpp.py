"""EFT-20 to EFT-24 against the C++ client (version 3 only: it speaks nothing else).

The same attacks as ``test_eft20_impostor.py`` and ``test_eft21_hostile_server.py``,
with ``client/cpp/build/eft-client-cpp`` as the victim; skipped when it is not built
(``client/cpp/build.sh``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.conftest import Attacks, expected
from tests.cpp.helpers import (
    BUILDS,
    EXIT_CONNECTION,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_SERVER,
    run_client,
)
from tests.support.processes import write_random_file

BINARY = BUILDS["release"]
pytestmark = pytest.mark.skipif(not BINARY.is_file(), reason=f"{BINARY} is not built")

HOLD = "6"
CLIENT_TIMEOUT = "1"


@pytest.fixture
def attacks_v3(tmp_path: Path) -> Iterator[Attacks]:
    runner = Attacks(tmp_path, 3)
    yield runner
    for process in runner.started:
        process.stop()


def _client(tmp_path: Path, address: str, source: Path, *args: str) -> tuple[int, str]:
    work = tmp_path / "cpp-client"
    work.mkdir(exist_ok=True)
    command = [str(source), "--server", address, "--name", "frank", "--dir", str(work), *args]
    run = run_client(BINARY, command, cwd=work)
    return run.returncode, run.describe()


def test_an_impostor_reads_the_cpp_clients_file_which_it_reports_sent(
    attacks_v3: Attacks, tmp_path: Path
) -> None:
    source = tmp_path / "ledger.txt"
    source.write_bytes(b"account 7731: 12 400.00\n")
    loot = tmp_path / "loot"
    impostor = attacks_v3.start("impostor", "--out", loot)
    code, output = _client(tmp_path, impostor.address, source)
    result = impostor.finish()
    assert result.succeeded is expected("EFT-20 impostor reads every file", 3)
    assert code == EXIT_OK and "CRC ok" in output, output
    assert (loot / "ledger.txt").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("mode", "size", "exit_code"),
    [
        ("stall", 100, EXIT_CONNECTION),
        ("trickle", 100, EXIT_CONNECTION),
        ("stop-reading", 24 << 20, EXIT_CONNECTION),
        ("huge-size", 100, EXIT_SERVER),
        ("garbage", 100, EXIT_SERVER),
        ("resend", 5000, EXIT_INTEGRITY),
    ],
)
def test_a_hostile_servers_answers_leave_the_cpp_client_bounded(
    attacks_v3: Attacks, tmp_path: Path, mode: str, size: int, exit_code: int
) -> None:
    source = write_random_file(tmp_path / "upload.bin", size)
    hostile = attacks_v3.start(
        "hostile-server", "--answer", mode, "--hold", HOLD, "--interval", "0.4"
    )
    code, output = _client(tmp_path, hostile.address, source, "--timeout", CLIENT_TIMEOUT)
    result = hostile.finish()
    assert code == exit_code, output
    if mode == "resend":  # EFT-22: the same two retry rules as the Python client
        assert result.succeeded and result.result["most"] == 16
    else:  # EFT-21, EFT-24: bounded by its one deadline per reply and its send timeout
        assert not result.succeeded, result.output
