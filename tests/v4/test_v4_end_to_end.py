"""Version 4 with real server, client and proxy processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import select
import socket
import subprocess
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from eft_client.errors import ExitCode
from eft_lab.processes import clean_env
from tests.support.processes import (
    ClientDir,
    ProxyProcess,
    ServerProcess,
    read_json_lines,
    write_random_file,
)

MiB = 1 << 20


def _v4(client_factory: Callable[..., ClientDir], name: str, address: str) -> ClientDir:
    client = client_factory(name, address)
    client.protocol = 4
    return client


def _stored(server: ServerProcess, client: ClientDir, name: str) -> Path:
    return server.data_dir / "v4" / "files" / client.client_id_hex / name


def _digest(path: Path) -> str:
    """BLAKE3 of a file, read in 16 MiB pieces (a 4 GiB file never sits in memory)."""
    hasher = blake3.blake3()
    with path.open("rb") as handle:
        while piece := handle.read(16 * MiB):
            hasher.update(piece)
    return hasher.hexdigest()


def test_register_then_log_in_and_store(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "vera", server.address)
    source = write_random_file(tmp_path / "plan.pdf", 3 * MiB + 5, seed=40)
    first = client.run([source])
    assert first.returncode == 0, first.stderr
    assert first.kinds()[:3] == ["connected", "server_pinned", "registered"]
    me4 = (client.path / "me4.info").read_text().splitlines()
    assert me4[0] == "vera" and me4[2].startswith("x25519:")
    assert not (client.path / "me.info").exists(), "v3 and v4 identities are kept apart"
    listening = next(r for r in server.logs() if r.get("event") == "listening")
    pins = (client.path / "known_servers").read_text().split()
    assert pins == [server.address, listening["fingerprint"]]
    assert _stored(server, client, "plan.pdf").read_bytes() == source.read_bytes()
    second = client.run([source])
    assert second.returncode == 0, second.stderr
    assert "reconnected" in second.kinds() and "server_pinned" not in second.kinds()
    assert not (server.data_dir / "files").exists() or not any(
        (server.data_dir / "files").iterdir()
    ), "nothing of version 4 lands in version 3's directories"


def test_an_empty_file_and_several_files(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "walt", server.address)
    files = [
        write_random_file(tmp_path / "empty.txt", 0),
        write_random_file(tmp_path / "exact.bin", 2 * MiB, seed=41),
        write_random_file(tmp_path / "odd.bin", MiB + 1, seed=42),
    ]
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    for path in files:
        assert _stored(server, client, path.name).read_bytes() == path.read_bytes()


def test_a_name_version_4_cannot_carry_is_refused_before_connecting(
    client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "_bob!", "127.0.0.1:1")
    run = client.run([write_random_file(tmp_path / "f.bin", 10)])
    assert run.returncode == ExitCode.USAGE
    assert "version-4 name" in run.stderr


def test_a_changed_server_key_stops_the_client_before_it_says_who_it_is(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "xena", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000)
    assert client.run([source]).returncode == 0
    old = (client.path / "known_servers").read_text().split()[1]
    server.stop()
    (server.data_dir / "server.key").unlink()  # a new key: an impostor, as far as we know
    server.start()  # on the port it holds
    new = next(r for r in server.logs() if r.get("event") == "listening")["fingerprint"]
    run = client.run([source])
    assert run.returncode == ExitCode.SERVER_IDENTITY
    assert old in run.stderr and new in run.stderr
    events = [r.get("event") for r in server.logs()]
    assert "reconnected" not in events and "registered" not in events


def test_version_3_is_refused_for_a_pinned_server(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "yuri", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000)
    assert client.run([source]).returncode == 0
    client.protocol = 3
    run = client.run([source])
    assert run.returncode == ExitCode.USAGE
    assert "refusing version 3" in run.stderr


def test_a_passphrase_protects_the_key(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "zara", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000)
    client.extra_env = {"EFT_PASSPHRASE": "correct horse"}
    assert client.run([source]).returncode == 0
    key_line = (client.path / "me4.info").read_text().splitlines()[2]
    assert key_line.startswith("x25519-scrypt-n")
    assert (client.path / "priv4.key").read_text().strip() == key_line
    client.extra_env = {}
    missing = client.run([source])
    assert missing.returncode == ExitCode.USAGE and "passphrase" in missing.stderr
    client.extra_env = {"EFT_PASSPHRASE": "wrong"}
    wrong = client.run([source])
    assert wrong.returncode == ExitCode.USAGE and "wrong passphrase" in wrong.stderr
    secret = tmp_path / "passphrase.txt"
    secret.write_text("correct horse\n")
    client.extra_env = {}
    assert client.run([source], "--passphrase-file", str(secret)).returncode == 0


def test_a_passphrase_given_for_a_plain_key_protects_it_once(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    """--passphrase-file on a key kept in plaintext: the key is sealed (both files,
    0600) and the client says so once, instead of leaving it readable and exiting 0."""
    client = _v4(client_factory, "pia", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000)
    assert client.run([source]).returncode == 0
    assert (client.path / "me4.info").read_text().splitlines()[2].startswith("x25519:")
    secret = tmp_path / "passphrase.txt"
    secret.write_text("correct horse\n")
    first = client.run([source], "--passphrase-file", str(secret))
    assert first.returncode == 0, first.stderr
    assert first.kinds().count("key_protected") == 1
    assert "reconnected" in first.kinds()  # the same identity, now sealed
    for name in ("me4.info", "priv4.key"):
        text = (client.path / name).read_text()
        assert "x25519:" not in text and "x25519-scrypt-n" in text
        assert (client.path / name).stat().st_mode & 0o777 == 0o600
    second = client.run([source], "--passphrase-file", str(secret))
    assert second.returncode == 0 and "key_protected" not in second.kinds()
    missing = client.run([source])
    assert missing.returncode == ExitCode.USAGE and "passphrase" in missing.stderr


def test_a_transfer_cut_at_half_resumes_where_the_server_stopped(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    size = 24 * MiB
    proxy = proxy_factory(server.address, "never", "--cut-after", str(size // 2))
    client = _v4(client_factory, "abel", proxy.address)
    source = write_random_file(tmp_path / "half.bin", size, seed=43)
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    resumed = next(e for e in run.events if e["event"] == "resuming")
    assert 35 <= resumed["percent"] <= 55, resumed
    assert _stored(server, client, "half.bin").read_bytes() == source.read_bytes()
    closed = [r for r in read_json_lines(proxy.log_path) if r.get("event") == "closed"]
    after_cut = closed[-1]["client_bytes"]
    assert 0.4 * size < after_cut < 0.7 * size, f"{after_cut / MiB:.1f} MiB sent after the cut"
    assert not any((server.data_dir / "v4" / "partial").glob("*/*.part"))


def test_a_version_3_client_is_refused_with_legacy_deny(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--legacy", "deny")
    client = client_factory("carl", server.address)  # version 3
    # Accepted, then closed: a lost connection, retried for the window (1 s here).
    run = client.run([write_random_file(tmp_path / "f.bin", 100)], "--retry-for", "1")
    assert run.returncode == ExitCode.CANNOT_CONNECT
    refused = [r for r in server.logs() if r.get("event") == "connection_refused"]
    assert refused and refused[0]["reason"] == "legacy_denied"


@contextlib.contextmanager
def _downgrading_proxy(target_port: int) -> Iterator[int]:
    """A man in the middle that rewrites the first header's version byte from 4 to 3."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        first = bytearray(await reader.readexactly(23))
        first[16] = 3
        up_writer.write(bytes(first))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        server.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield int(holder["port"])  # type: ignore[call-overload]
    finally:
        loop = holder["loop"]
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)


def test_a_downgrade_to_version_3_is_detected_and_never_followed(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    with _downgrading_proxy(server.port) as port:
        client = _v4(client_factory, "dora", f"127.0.0.1:{port}")
        run = client.run([write_random_file(tmp_path / "f.bin", 100)])
    assert run.returncode == ExitCode.SERVER_ERROR
    assert "--protocol 3" in run.stderr and "nothing was sent" in run.stderr
    assert not (client.path / "me.info").exists() and not (client.path / "me4.info").exists()
    events = [r.get("event") for r in server.logs()]
    assert "registered" not in events


@pytest.mark.slow
@pytest.mark.timeout(1200)  # above the client run's own 900 s
def test_a_file_over_4_gib_with_flat_server_memory(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    size = (4 << 30) + 3 * MiB + 7  # past every 32-bit size field of version 3
    source = tmp_path / "huge.bin"
    with open(source, "wb") as handle:  # sparse: generated by the kernel, not stored
        handle.truncate(size)
        # ...but with distinct marks, so that a piece stored twice, lost, or in the wrong
        # place changes the digest: at each 256 MiB, across 2^32, and at the very end.
        marks = [*range(0, size, 256 * MiB), (1 << 32) - 5000, size - 4096]
        for offset in marks:
            handle.seek(offset)
            handle.write(offset.to_bytes(8, "little") * 512)
    client = _v4(client_factory, "hugo", server.address)
    run = client.run([source], timeout=900)
    peak = server.peak_rss()  # the kernel's high-water mark: no sampling to miss a peak
    assert run.returncode == 0, run.stderr
    stored = _stored(server, client, "huge.bin")
    assert stored.stat().st_size == size
    assert _digest(stored) == _digest(source), "the stored file's content differs"
    stored.unlink()  # 4 GiB of disk back at once
    assert peak < 100 * MiB, f"server RSS peaked at {peak / MiB:.0f} MiB"


def test_the_pinned_key_is_announced_once_across_reconnections(
    server: ServerProcess,
    client_factory: Callable[..., ClientDir],
    proxy_factory: Callable[..., ProxyProcess],
    tmp_path: Path,
) -> None:
    proxy = proxy_factory(server.address, "never", "--cut-after", str(MiB))
    client = _v4(client_factory, "once", proxy.address)
    source = write_random_file(tmp_path / "cut.bin", 4 * MiB, seed=77)
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert run.kinds().count("connected") >= 2  # the cut forced a second connection
    assert run.kinds().count("server_pinned") == 1


@pytest.mark.parametrize(
    ("answer", "says", "advice"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "answered in text", "--server"),
        (b"\x03\x47\x06\x00\x00\x00\x00", "answered in version 3 (response 1607)", "--protocol 3"),
        (b"\x00\xff\x13\x37\x00\x00\x09", "is not eft's", "--server"),
    ],
    ids=["http", "version-3", "garbage"],
)
def test_a_server_that_does_not_speak_version_4_is_named_for_what_it_is(
    client_factory: Callable[..., ClientDir], tmp_path: Path, answer: bytes, says: str, advice: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"

        def answer_once() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):
                    pass

        responder = threading.Thread(target=answer_once, daemon=True)
        responder.start()
        run = _v4(client_factory, "curious", address).run(
            [write_random_file(tmp_path / "f.bin", 10)], "--retry-for", "0"
        )
        responder.join(30)
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert says in run.stderr and advice in run.stderr, run.stderr
    assert "version 60 code" not in run.stderr


def test_a_server_that_forgot_us_is_registered_with_at_once_and_said_so(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--ephemeral")  # forgets its clients (not its key) on restart
    client = _v4(client_factory, "amnesia", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000, seed=78)
    assert client.run([source]).returncode == 0
    server.restart()
    run = client.run([source])
    assert run.returncode == 0, run.stderr
    assert run.kinds().count("reconnect_denied") == 1
    assert "registered" in run.kinds()
    assert "connection_retry" not in run.kinds(), "a 1606 is no lost connection"


def test_a_protected_key_asks_for_its_passphrase_on_a_terminal(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    """As ssh does: no file and no variable, but a person at a terminal: ask them."""
    client = _v4(client_factory, "yara", server.address)
    source = write_random_file(tmp_path / "f.bin", 1000)
    client.extra_env = {"EFT_PASSPHRASE": "correct horse"}
    assert client.run([source]).returncode == 0
    main, terminal = pty.openpty()
    proc = subprocess.Popen(
        client.command([source]),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=clean_env(),
        start_new_session=True,  # the pseudo-terminal becomes its controlling terminal
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509
    )
    os.close(terminal)
    seen = b""
    try:
        while b"passphrase for" not in seen:
            ready, _, _ = select.select([main], [], [], 60)
            assert ready, f"no prompt: {seen!r}"
            seen += os.read(main, 1024)
        os.write(main, b"correct horse\n")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert "me4.info" in seen.decode()
