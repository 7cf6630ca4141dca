"""--json as a program reads it: progress says which file and of how much, and the stream
always ends with one final event (README, the client's events)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.helpers import wait_until
from tests.support.processes import ClientDir, ServerProcess, finish, paused, write_random_file

MiB = 1 << 20
FINAL = {"done", "failed", "interrupted"}


@pytest.mark.parametrize("protocol", [3, 4], ids=["v3", "v4"])
def test_progress_names_its_file_and_total_and_ends_at_the_total(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path, protocol: int
) -> None:
    client = client_factory(f"json{protocol}", server.address)
    client.protocol = protocol
    files = [write_random_file(tmp_path / f"{n}.bin", (n + 1) * MiB, seed=n) for n in range(2)]
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    starts = {e["file"]: e["content_size"] for e in run.events if e["event"] == "file_started"}
    progress = [e for e in run.events if e["event"] == "progress"]
    assert {e["file"] for e in progress} == {f.name for f in files}
    for event in progress:
        assert event["total"] == starts[event["file"]]
        assert 0 < event["sent"] <= event["total"]
    for name, total in starts.items():
        assert [e["sent"] for e in progress if e["file"] == name][-1] == total
    assert [e["event"] for e in run.events if e["event"] in FINAL] == ["done"]
    assert run.events[-1]["event"] == "done"


def test_ctrl_c_ends_the_stream_with_a_final_event(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = client_factory("stopped", server.address)
    source = write_random_file(tmp_path / "long.bin", 64 * MiB, seed=9)
    proc = client.start([source], "--packet-size", "4096")
    temporary = server.data_dir / "tmp"
    wait_until(lambda: any(temporary.iterdir()) or proc.poll() is not None, "the upload")
    with paused(proc):  # the Ctrl-C lands mid-upload however fast the machine is
        assert proc.poll() is None, "the upload was over before the Ctrl-C"
        proc.send_signal(signal.SIGINT)
    run = finish(proc)
    assert run.returncode == 130, run.stderr
    assert run.events[-1]["event"] == "interrupted"
    assert run.events[-1]["exit_code"] == 130
    assert json.dumps(run.events[-1])  # a whole object, not a cut line
