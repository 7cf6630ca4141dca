"""Version 4, the disk refuses while a file is still streaming in: the client must read
the server's answer (1607 error 7) and stop, not meet a reset on its next send, resend
the whole file on new connections and exit 3 ("is the server running?")."""

from __future__ import annotations

from pathlib import Path

from eft_client.errors import ExitCode
from tests.support.fs_faults import Fault, Held, hooked_server
from tests.support.processes import ClientDir, finish, write_random_file

MiB = 1 << 20


def test_a_write_refused_mid_upload_is_told_to_the_client_which_stops_at_once(
    tmp_path: Path,
) -> None:
    server, hook = hooked_server(tmp_path / "server")
    try:
        client = ClientDir(tmp_path / "vera", "vera", server.address, protocol=4)
        small = write_random_file(tmp_path / "small.bin", 1000, seed=1)
        assert client.run([small]).returncode == 0
        hook.arm(Fault("write", "v4/partial/*/*.part", "ENOSPC", after=3, times=100))  # stays full
        big = write_random_file(tmp_path / "big.bin", 48 * MiB, seed=2)
        run = client.run([big], timeout=120)
        assert run.returncode == ExitCode.SERVER_STORAGE, run.stderr
        assert "No space left on device" in run.stderr
        assert "connection_retry" not in run.kinds(), "nothing is worth sending again"
        assert len(hook.faults_fired()) == 1
        leftovers = [p for p in (server.data_dir / "v4" / "partial").rglob("*") if p.is_file()]
        assert leftovers == [], "nothing of the refused upload is left behind"
        hook.arm()  # the disk has room again: the same server stores the next file
        later = write_random_file(tmp_path / "later.bin", 3 * MiB + 1, seed=3)
        again = client.run([later])
        assert again.returncode == 0, again.stderr
        stored = server.data_dir / "v4" / "files" / client.client_id_hex / "later.bin"
        assert stored.read_bytes() == later.read_bytes()
    finally:
        server.stop()


def test_a_streamed_file_the_disk_refuses_is_told_and_nothing_of_it_is_stored(
    tmp_path: Path,
) -> None:
    """A file of one record (1 MiB: too large for a pack, so it is streamed) is written
    in a writer thread (issue 22); the disk's refusal there still reaches the client as
    error 7, before anything is answered as stored."""
    server, hook = hooked_server(tmp_path / "server")
    try:
        client = ClientDir(tmp_path / "vera", "vera", server.address, protocol=4)
        small = write_random_file(tmp_path / "small.bin", 1000, seed=1)
        assert client.run([small]).returncode == 0
        hook.arm(Fault("write", "v4/partial/*/*.part", "ENOSPC", times=100))
        one_record = write_random_file(tmp_path / "one-record.bin", MiB, seed=2)
        run = client.run([one_record], timeout=120)
        assert run.returncode == ExitCode.SERVER_STORAGE, run.stderr
        assert "No space left on device" in run.stderr
        assert len(hook.faults_fired()) == 1
        files = server.data_dir / "v4" / "files" / client.client_id_hex
        assert not (files / "one-record.bin").exists()
        leftovers = [p for p in (server.data_dir / "v4" / "partial").rglob("*") if p.is_file()]
        assert leftovers == [], "nothing of the refused upload is left behind"
        hook.arm()
        again = client.run([one_record])
        assert again.returncode == 0, again.stderr
        assert (files / "one-record.bin").read_bytes() == one_record.read_bytes()
        assert any(line.get("event") == "files_streamed" for line in server.logs())
    finally:
        server.stop()


def test_a_streamed_file_s_write_held_by_the_disk_holds_no_other_client(tmp_path: Path) -> None:
    """The 1 MiB streamed file's write is in a writer thread (issue 22), not on the event
    loop: while the disk holds it, another client logs in and stores its files; then the
    held file is stored too. (Written on the event loop, the write held every client.)"""
    server, hook = hooked_server(tmp_path / "server")
    held = Held(tmp_path / "hold.fifo")
    try:
        slow = ClientDir(tmp_path / "slow", "slow", server.address, protocol=4)
        tiny = write_random_file(tmp_path / "tiny.bin", 10, seed=1)
        assert slow.run([tiny]).returncode == 0  # registered: its folder's name is known
        folder = f"v4/partial/{slow.client_id_hex}/*.part"
        hook.arm(Fault("write", folder, errno=None, hold=str(held.path)))
        one_record = write_random_file(tmp_path / "one-record.bin", MiB, seed=2)
        slow_run = slow.start([one_record])
        held.wait()  # the slow client's write is held by the disk
        other = ClientDir(tmp_path / "other", "other", server.address, protocol=4)
        small = write_random_file(tmp_path / "small.bin", 1000, seed=3)
        big = write_random_file(tmp_path / "big.bin", MiB, seed=4)
        meanwhile = other.run([small, big], timeout=120)
        assert meanwhile.returncode == 0, meanwhile.stderr
        assert slow_run.poll() is None, "the held client cannot have finished"
        held.let_go()
        slow_done = finish(slow_run)
        assert slow_done.returncode == 0, slow_done.stderr
        stored = server.data_dir / "v4" / "files"
        assert (stored / slow.client_id_hex / "one-record.bin").read_bytes() == (
            one_record.read_bytes()
        )
        assert (stored / other.client_id_hex / "big.bin").read_bytes() == big.read_bytes()
    finally:
        held.let_go()
        server.stop()
