"""EFT-21 to EFT-24: a hostile server's answers. Does our client stay bounded in time,
in what it sends again, in what it believes, and in what it reads?

Each mode of ``eft-attack hostile-server`` is run against our client of each version.
The version-4 modes that need answers after the handshake (``stop-reading``, ``resend``,
``resume-lie``) run against a hostile server the client trusts (its fingerprint given
as ``--server-fingerprint``): the strongest case, where the server itself is the
attacker; the others answer message 1, which is all an impostor gets to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, write_random_file

#: The client's --timeout; the attack holds it for HOLD seconds, far longer.
CLIENT_TIMEOUT = "1"
HOLD = "6"
#: Larger than everything the kernel buffers between the two (the client's send buffer
#: grows to 4 MiB, the attacker's receive buffer is kept small): its writes block.
BLOCKING_FILE = 24 << 20
#: Three version-4 chunks of 1 MiB.
THREE_CHUNKS = (2 << 20) + 12345


@dataclass(frozen=True)
class Case:
    finding: str
    size: int = 100
    interval: str = "0.4"


CASES = {
    "stall": Case("EFT-21 a stalling server holds the client"),
    "trickle": Case("EFT-21 a stalling server holds the client"),
    "stop-reading": Case("EFT-21 a stalling server holds the client", BLOCKING_FILE),
    "resend": Case("EFT-22 a server makes the client send a file again and again", 5000),
    "resume-lie": Case("EFT-23 a server lies about the part of a file it holds", THREE_CHUNKS),
    "huge-size": Case("EFT-24 hostile sizes and bytes in answers"),
    "garbage": Case("EFT-24 hostile sizes and bytes in answers"),
    "small-limit": Case("EFT-24 hostile sizes and bytes in answers"),
}
TRUSTED_V4 = ("stop-reading", "resend", "resume-lie", "small-limit")
VERSION_4_ONLY = {
    "resume-lie": "version 3 cannot resume: every attempt sends the whole file",
    "small-limit": "version 3 announces no file size limit",
}


#: Every mode against each version it applies to (a direct parametrization of the
#: ``version`` fixture), so nothing is generated only to be skipped.
RUNS = [
    pytest.param(mode, version, id=f"v{version}-{mode}")
    for mode in sorted(CASES)
    for version in (3, 4)
    if not (version == 3 and mode in VERSION_4_ONLY)
]


@pytest.mark.parametrize(("mode", "version"), RUNS)
def test_a_hostile_servers_answers_leave_the_client_bounded(
    version: int,
    mode: str,
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    case = CASES[mode]
    source = write_random_file(tmp_path / "upload.bin", case.size)
    hostile = attacks.start(
        "hostile-server", "--answer", mode, "--hold", HOLD, "--interval", case.interval
    )
    listening = hostile.wait_for("listening")
    victim = victims("erin", hostile.address)
    extra = ["--timeout", CLIENT_TIMEOUT, "--retries", "0"]
    if version == 4 and mode in TRUSTED_V4:
        extra += ["--server-fingerprint", listening["fingerprint"]]
    run = victim.run([source], *extra)
    result = hostile.finish()

    assert result.succeeded is expected(case.finding, version), result.output
    verified = "file_verified" in run.kinds()
    if mode in ("stall", "trickle"):
        # Given up at its --timeout, long before the attack let go: a lost connection.
        assert run.returncode == ExitCode.CANNOT_CONNECT, run.stderr
        assert result.result["closed_after"] < float(HOLD)
    elif mode == "stop-reading":
        assert run.returncode == ExitCode.CANNOT_CONNECT, run.stderr
        assert not verified and result.result["continued"] is False
    elif mode == "resend":
        # v3: 1607 three times makes the whole file go again each time (a 1607 to a file
        # is "send it again"), and three wrong CRCs make three more attempts: 4 x 4. v4:
        # a wrong digest makes a new attempt, up to 4; then 902, exit 5.
        assert result.result["most"] == (16 if version == 3 else 4)
        assert run.returncode == ExitCode.INTEGRITY_FAILED, run.stderr
    elif mode == "resume-lie":
        # The client believed the lie and sent only the last chunk each time, but its
        # digest covers the whole file: no attempt matched, none was confirmed.
        assert result.result["sent_from"] == [3, 3, 3, 3]
        assert result.result["confirmed_short"] == []
        assert run.returncode == ExitCode.INTEGRITY_FAILED and not verified, run.stderr
    elif mode == "small-limit":
        # A file over the limit the server announced is not sent, and said so (before
        # the fix: a ValueError's traceback, exit 1).
        assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
        assert "up to 16 bytes" in run.stderr and "Traceback" not in run.stderr
    else:  # huge-size, garbage: refused at the header (exit 6, not a timeout's exit 3)
        assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert not verified
