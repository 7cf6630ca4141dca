"""The lab's byte-for-byte check (lab/eft_lab/verify.py) and its C++ client loop
(lab/eft_lab/cpp_clients.py), on their own: a manifest checked against the files of
both versions, each problem named; the loop run against a stand-in binary (a real
process) that "stores" the file and exits with the codes the test chooses, so its
counting and its manifest can be checked against ``verify_manifests``."""

from __future__ import annotations

import hashlib
import json
import stat
import threading
from pathlib import Path

import pytest

from eft_lab import cpp_clients
from eft_lab.cpp_clients import CppClientLoop, find_cpp_client
from eft_lab.verify import count_stored_files, verify_manifests

CLIENT_ID = "ab" * 16


def _manifest(client_dir: Path, *records: dict[str, object]) -> None:
    client_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"client_id": CLIENT_ID, **record}) for record in records]
    (client_dir / "verified.jsonl").write_text("".join(line + "\n" for line in lines))


def _record(name: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"file": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}


def test_every_verified_file_on_disk_is_counted_and_each_problem_named(tmp_path: Path) -> None:
    files = tmp_path / "data" / "files"
    v4_files = tmp_path / "data" / "v4" / "files"
    for base, name, data in ((files, "a.bin", b"aaa"), (v4_files, "b.bin", b"bb")):
        (base / CLIENT_ID).mkdir(parents=True, exist_ok=True)
        (base / CLIENT_ID / name).write_bytes(data)
    (files / CLIENT_ID / "changed.bin").write_bytes(b"not what was sent")
    _manifest(
        tmp_path / "alice",
        _record("a.bin", b"old"),  # an earlier upload under the same name: superseded
        _record("a.bin", b"aaa"),
        _record("b.bin", b"bb", protocol=4),  # version 4's files live under v4/files
        _record("missing.bin", b"x"),
        _record("changed.bin", b"what was sent"),
    )
    (tmp_path / "no-manifest").mkdir()
    result = verify_manifests([tmp_path / "alice", tmp_path / "no-manifest"], files)
    assert result.checked == 4
    assert result.bytes == 3 + 2
    assert result.problems == [
        "alice: missing.bin verified but not on the server",
        "alice: changed.bin differs on the server",
    ]
    assert count_stored_files(files) == 3
    assert count_stored_files([files]) == 3


def test_a_file_on_any_replica_counts(tmp_path: Path) -> None:
    replicas = [tmp_path / f"r{n}" / "files" for n in (1, 2)]
    (replicas[1] / CLIENT_ID).mkdir(parents=True)
    (replicas[1] / CLIENT_ID / "a.bin").write_bytes(b"aaa")
    _manifest(tmp_path / "alice", _record("a.bin", b"aaa"))
    result = verify_manifests([tmp_path / "alice"], replicas)
    assert (result.checked, result.problems) == (1, [])


# The stand-in for eft-client-cpp: writes me.info as the real one does, copies the file
# into "the server" (the --server argument is a directory here), and exits with the next
# code from codes.txt.
FAKE_CLIENT = """#!/bin/sh
dir="$6"; name="$7"; server="$2"
printf 'walter\\n%s\\n' "{client_id}" > "$dir/me.info"
code=$(head -n 1 "$dir/codes.txt"); sed -i 1d "$dir/codes.txt"
if [ "$code" = 0 ]; then mkdir -p "$server/{client_id}"; cp "$dir/$name" "$server/{client_id}/"; fi
exit "$code"
"""


class StopAfter(threading.Event):
    """Set itself after ``runs`` checks of the loop: the loop stops on its own."""

    def __init__(self, runs: int) -> None:
        super().__init__()
        self.left = runs

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_the_loop_counts_each_exit_and_records_what_was_verified(tmp_path: Path) -> None:
    binary = tmp_path / "eft-client-cpp"
    binary.write_text(FAKE_CLIENT.format(client_id=CLIENT_ID))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    workdir, stored = tmp_path / "client", tmp_path / "server-files"
    workdir.mkdir()
    (workdir / "codes.txt").write_text("0\n5\n1\n0\n")  # verified, gave up, failed, verified
    loop = CppClientLoop(binary, workdir, "walter", seed=3)
    loop._stop = StopAfter(4)
    loop.start(str(stored), rate=0, max_size=2000)
    loop.join()
    assert (loop.runs, loop.verified, loop.gave_up, loop.failed) == (4, 2, 1, 1)
    records = [json.loads(line) for line in (workdir / "verified.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["cpp000001.bin", "cpp000004.bin"]
    assert {r["client_id"] for r in records} == {CLIENT_ID}
    assert loop.bytes_verified == sum(r["size"] for r in records)
    assert not list(workdir.glob("cpp*.bin")), "each run's file is removed after it"
    result = verify_manifests([workdir], stored)
    assert (result.checked, result.bytes, result.problems) == (2, loop.bytes_verified, [])


def test_the_binary_is_looked_for_in_the_build_then_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpp_clients, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_cpp_client() is None
    on_path = tmp_path / "bin" / "eft-client-cpp"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_cpp_client() == on_path
    built = tmp_path / "repo" / "client" / "cpp" / "build" / "eft-client-cpp"
    built.parent.mkdir(parents=True)
    built.write_text("")
    assert find_cpp_client() == built, "the repository's build first"
