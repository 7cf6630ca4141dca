"""EFT-15: the record-buffer flood (version 4 only; docs/SECURITY.md).

Several identities (registration is free) announce 1 MiB records and send none of them,
or one byte each, on every connection they may open. The server takes a record buffer
only once a record's bytes come; while someone waits for one, a holder whose record has
not come at ``--record-min-rate`` since it took it loses it; and one identity holds at
most ``--record-buffers-per-client``. Here 3 buffers and 1 per identity: three
trickling identities can hold every buffer, and our client's wait is what cuts them
off (or it finds one free), whatever the timing. The upload's time idle and under the
flood, and the cuts, are printed (``-s``), not asserted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.attacks.conftest import Attacks, stored
from tests.support.processes import ClientDir, ServerProcess, write_random_file

#: Long timeouts: only the record rate and the buffer shares can free anything.
SERVER = (
    "--record-buffers",
    "3",
    "--record-buffers-per-client",
    "1",
    "--read-timeout",
    "600",
    "--idle-timeout",
    "600",
)
FILE_SIZE = 8 << 20


def _upload(victim: ClientDir, data: Path) -> float:
    started = time.monotonic()
    run = victim.run([data], "--timeout", "10", "--retries", "0")
    assert run.returncode == 0, run.stderr
    return time.monotonic() - started


@pytest.mark.parametrize("version", [4], indirect=True)
@pytest.mark.parametrize("trickle", ["0", "1"], ids=["silent", "one-byte"])
def test_announced_records_cannot_hold_the_buffers_a_real_upload_needs(
    version: int,
    trickle: str,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target(*SERVER)
    data = write_random_file(tmp_path / "data.bin", FILE_SIZE)
    idle = _upload(victims("before", server.address), data)
    flood = attacks.start(
        "slow",
        "--target",
        server.address,
        "--records",
        "--identities",
        "3",
        "--per-identity",
        "4",
        "--trickle",
        trickle,
        "--hold",
        "600",
    )
    flood.wait_for("holding")

    victim = victims("alice", server.address)
    flooded = _upload(victim, data)

    assert flood.proc.poll() is None, "the flood must still be on"
    if trickle == "0":  # they stood through the upload, and held no buffer
        assert not [e for e in flood.events() if e.get("event") == "cut"]
    flood.stop()
    assert stored(server, version, victim.client_id_hex, "data.bin").read_bytes() == (
        data.read_bytes()
    )
    cuts = [e for e in server.logs() if e.get("kind") == "record_rate"]
    print(
        f"\n8 MiB v4 upload: idle {idle:.2f} s, under the {trickle}-byte flood "
        f"{flooded:.2f} s, {len(cuts)} slow records cut"
    )
