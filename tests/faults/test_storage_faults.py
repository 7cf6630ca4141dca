"""Storage faults on purpose, at every step, for both versions, on running servers.

The test hook (tests/support/fshook) makes a real server's own calls fail: creating the
upload's file (``open``), writing it, syncing it, renaming it to its name, syncing its
directory, writing its registry row; with ENOSPC, EIO, EDQUOT or EROFS, or slowly. One
server per version serves every case in turn, never restarted, with a bystander
connection opened before the first fault, with an upload of its own in flight through
each fault and completed after it. Each case checks: the
client got a clear answer (v3 1607, v4 1607 error 7), nothing of the upload is left
behind, the bystander and a new client are served. The real clients' exit codes for a
fault at each step are checked last (v3 6 after four 1607s; v4 8 at once).
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER
from eft_protocol.v4 import client as v4
from eft_protocol.v4.records import ErrorCode
from eft_protocol.wire import Acknowledged, FileReceived, ServerError
from tests.hostile.helpers import (
    Peer,
    encrypted,
    field255,
    packet,
    rejections_of,
    request,
    wait_until,
)
from tests.support.fs_faults import Fault, FsHook, V4Peer, hooked_server
from tests.support.processes import ClientDir, ServerProcess, write_random_file

MiB = 1 << 20
STEPS = ("open", "write", "sync", "rename", "dirsync", "registry")
ERRORS = ("ENOSPC", "EIO", "EDQUOT", "EROFS")
#: Steps that come after the file took its name: the new file may stay (RELIABILITY.md,
#: known gaps), but complete.
AFTER_RENAME = ("dirsync", "registry")
_names = itertools.count()


def fault_for(version: int, step: str, error: str | None, times: int = 1) -> Fault:
    upload = "tmp/*.part" if version == 3 else "v4/partial/*/*.part"
    stored = "files/*" if version == 3 else "v4/files/*"
    path = {"rename": f"{stored}/*", "dirsync": stored, "registry": "eft.sqlite3"}
    delay = 0.0 if error else 0.2  # no error: a slow disk
    after = 1 if step == "write" else 0  # mid-file
    return Fault(step, path.get(step, upload), error, after=after, times=times, delay=delay)


@dataclass
class Served:
    server: ServerProcess
    hook: FsHook
    bystander: Peer | V4Peer


@pytest.fixture(scope="module", params=[3, 4], ids=["v3", "v4"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    version: int = request.param
    server, hook = hooked_server(tmp_path_factory.mktemp(f"faults_v{version}"))
    bystander: Peer | V4Peer
    if version == 3:
        bystander = Peer(server.address)
        bystander.handshake("bystander")
    else:
        bystander = V4Peer(server.address, "bystander")
    try:
        yield Served(server, hook, bystander)
    finally:
        bystander.close()
        server.stop()


def _leftovers(data: Path) -> list[str]:
    places = [data / "tmp", data / "v4" / "partial"]
    return [str(p) for place in places for p in place.rglob("*") if p.is_file()]


def _start_aside(bystander: Peer | V4Peer, name: str, content: bytes) -> Callable[[], None]:
    """The bystander's upload begun now; the returned call sends the rest, and checks it
    was stored."""
    if isinstance(bystander, V4Peer):
        bystander.start_file(name, content, upload_id=secrets.token_bytes(16))
        return bystander.finish_file
    sealed = encrypted(bystander.aes_key, content)
    frame = packet(bystander.client_id, name.encode(), sealed, orig_size=len(content))
    # The header, the packet's fields and less than an AES block: the server opens the
    # file, and writes nothing to it until the rest comes (no write meets the fault).
    cut = REQUEST_HEADER.size + PACKET_FIELDS.size + 8
    bystander.send(frame[:cut])

    def finish() -> None:
        bystander.send(frame[cut:])
        assert isinstance(bystander.receive(), FileReceived)
        bystander.send(request(900, field255(name.encode()), bystander.client_id))
        assert isinstance(bystander.receive(), Acknowledged)

    return finish


def _v3_upload(peer: Peer, name: bytes, content: bytes) -> object:
    """One file; the first answer that is not 1603, or 1604."""
    sealed = encrypted(peer.aes_key, content)
    peer.send(packet(peer.client_id, name, sealed, orig_size=len(content)))
    answer = peer.receive()
    if not isinstance(answer, FileReceived):
        return answer
    peer.send(request(900, field255(name), peer.client_id))
    return peer.receive()


@pytest.mark.parametrize("error", [*ERRORS, None], ids=[*ERRORS, "slow"])
@pytest.mark.parametrize("step", STEPS)
def test_a_storage_fault_is_answered_leaves_nothing_and_the_server_goes_on(
    served: Served, step: str, error: str | None
) -> None:
    server, hook, data = served.server, served.hook, served.server.data_dir
    number = next(_names)
    content = random.Random(number).randbytes(3 * MiB + 100)
    name = f"f{number}.bin"
    # The bystander's own upload is in flight (its file open) all through the fault.
    aside = random.Random(-number).randbytes(MiB + 7)
    finish_aside = _start_aside(served.bystander, f"aside{number}.bin", aside)
    before = wait_until(lambda: set(_leftovers(data)), "the bystander's upload under way")
    if isinstance(served.bystander, Peer):
        peer = Peer(server.address)
        peer.handshake(f"client{number}")
        final = data / "files" / peer.client_id.hex() / name
        mark = hook.mark()
        hook.arm(fault_for(3, step, error))
        answer = _v3_upload(peer, name.encode(), content)
        hook.arm()
        fired = hook.faults_fired(mark)
        if error is None:
            assert isinstance(answer, Acknowledged)
        else:
            assert isinstance(answer, ServerError), answer
            # Counted and logged as the server's fault, not the client's.
            wait_until(
                lambda: rejections_of(server, peer.local) == ["storage"],
                "the 1607 logged under the reason 'storage'",
            )
            assert set(_leftovers(data)) == before, "nothing of the upload is left behind"
            assert final.exists() == (step in AFTER_RENAME)
            # The connection goes on: the same file again, on it, is stored.
            assert isinstance(_v3_upload(peer, name.encode(), content), Acknowledged)
        peer.close()
        finish_aside()
        served.bystander.send_file(f"after{number}.txt", b"served after the fault")
    else:
        peer4 = V4Peer(server.address, f"client{number}")
        final = data / "v4" / "files" / peer4.session.client_id.hex() / name
        mark = hook.mark()
        hook.arm(fault_for(4, step, error))
        if error is None:
            peer4.send_file(name, content, upload_id=secrets.token_bytes(16))
        else:
            with pytest.raises(v4.RefusedByServer) as refused:
                peer4.send_file(name, content, upload_id=secrets.token_bytes(16))
            assert refused.value.error == ErrorCode.STORAGE
            assert f"({error})" in str(refused.value) or step == "registry"
        hook.arm()
        fired = hook.faults_fired(mark)
        peer4.close()
        finish_aside()
        served.bystander.send_file(
            f"after{number}.bin", b"served after the fault", upload_id=secrets.token_bytes(16)
        )
    assert [(f["step"], f["errno"]) for f in fired] == [(step, error)], "injected once"
    assert _leftovers(data) == [], "nothing of the upload is left behind"
    if error is None or step in AFTER_RENAME or isinstance(served.bystander, Peer):
        # Stored: by the slow case, by a v3 resend, or in place before the failure.
        assert final.read_bytes() == content
    else:
        assert not final.exists()


@pytest.mark.parametrize("version", [3, 4], ids=["v3", "v4"])
def test_the_clients_exit_with_their_storage_code_at_each_step_and_then_succeed(
    tmp_path: Path, version: int
) -> None:
    server, hook = hooked_server(tmp_path / "server")
    try:
        for step in STEPS:
            client = ClientDir(tmp_path / step, f"c{step}", server.address, protocol=version)
            warm = write_random_file(tmp_path / f"{step}.warm", 100, seed=1)
            assert client.run([warm]).returncode == 0  # registered before the fault
            source = write_random_file(tmp_path / f"{step}.bin", 2 * MiB + 7, seed=2)
            hook.arm(fault_for(version, step, "ENOSPC", times=100))  # the disk stays full
            run = client.run([source], "--retries", "0")
            hook.arm()
            expected = ExitCode.SERVER_ERROR if version == 3 else ExitCode.SERVER_STORAGE
            assert run.returncode == expected, (step, run.stderr)
            if version == 4:
                assert "No space left on device" in run.stderr or step == "registry"
            assert _leftovers(server.data_dir) == [], step
            again = client.run([source])
            assert again.returncode == 0, (step, again.stderr)
    finally:
        server.stop()
