"""What a peer of version 4's first revision (the release before revision 2) sees when
it meets this one, in both directions, with that release's own code: a refusal that
says so, never a file stored wrongly (docs/PROTOCOL-v4.md §11).

The old code is ``git archive`` of the last commit of revision 1, run with its packages
first on ``PYTHONPATH``; without the repository's history the tests skip.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from eft_protocol.v4.server import REVISION_1_REFUSAL
from tests.support.processes import ClientDir, ServerProcess, read_json_lines

#: The last commit of revision 1 (ChaChaPoly suite, no offer, BLAKE3 with no field).
REVISION_1_COMMIT = "7af03f1"
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "server", "client", "lab")


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``PYTHONPATH`` that runs revision 1's client and server."""
    root = tmp_path_factory.mktemp("revision-1")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", REVISION_1_COMMIT, *PACKAGES],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"no revision-1 code here: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return {"PYTHONPATH": ":".join(str(root / package) for package in PACKAGES)}


def _client(factory: Callable[..., ClientDir], name: str, address: str) -> ClientDir:
    client = factory(name, address)
    client.protocol = 4
    return client


def test_a_new_client_meets_an_old_server(
    tmp_path: Path, client_factory: Callable[..., ClientDir], old_code: dict[str, str]
) -> None:
    root = tmp_path / "old-server"
    root.mkdir()
    server = ServerProcess(root / "data", tmp_path / "old-server.log", env=old_code).start()
    try:
        source = tmp_path / "note.txt"
        source.write_bytes(b"for an old server\n")
        client = _client(client_factory, "newer", server.address)
        run = client.run([source], "--retries", "0")
        assert run.returncode == ExitCode.CANNOT_CONNECT, run.stderr
        assert "no answer to the version-4 hello" in run.stderr
        assert "first revision closes at once: upgrade it" in run.stderr
        assert "registered" not in run.kinds()
        assert not (server.data_dir / "v4" / "files").exists() or not any(
            (server.data_dir / "v4" / "files").rglob("*.txt")
        )
    finally:
        server.stop()
    closes = [e for e in read_json_lines(server.current_log) if e.get("event") == "v4_closed"]
    assert closes == [] or all("hello" in str(e) for e in closes)


def test_an_old_client_meets_a_new_server(
    server: ServerProcess,
    tmp_path: Path,
    client_factory: Callable[..., ClientDir],
    old_code: dict[str, str],
) -> None:
    source = tmp_path / "note.txt"
    source.write_bytes(b"from an old client\n")
    client = _client(client_factory, "older", server.address)
    client.extra_env.update(old_code)
    run = client.run([source])  # refused at once: no retry needed to give up
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert f"server error 1: {REVISION_1_REFUSAL}" in run.stderr
    assert "registered" not in run.kinds()
    assert not any((server.data_dir / "v4").rglob("*.txt"))
    server.stop()
    assert REVISION_1_REFUSAL in server.current_log.read_text()
