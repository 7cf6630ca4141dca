"""The C++ client's Windows build (issue 30), run under Wine against our Linux server.

client/cpp/windows/build.sh cross-builds ``eft-client-cpp.exe`` with MinGW-w64: this is
the Windows code (Winsock, Win32 files, ``wmain``) really running, against ``eft-server``
and the lab's corrupting proxy on 127.0.0.1 (tests/conftest.py's fixtures) and, for what a
correct server never does, the scripted server of tests/support. Wine is not Windows: what
these tests cannot show (Visual Studio's build, NTFS ACLs as Windows enforces them) is
said in client/cpp/README.md.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from Crypto.PublicKey import RSA

from tests.cpp.helpers import (
    EXIT_CONNECTION,
    EXIT_IDENTITY,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SERVER,
    EXIT_USAGE,
    Run,
    python_client_unavailable_reason,
    read_me_info,
    server_unavailable_reason,
    write_file,
)
from tests.support.fake_v3_server import Behaviour, FakeV3Server

from .helpers import EXE, MINGW_OBJDUMP, SYSTEM_DLLS, Wine, imported_dlls, windows_path

if TYPE_CHECKING:
    from tests.support.processes import ClientDir, ProxyProcess, ServerProcess

    ServerFactory = Callable[..., ServerProcess]
    ProxyFactory = Callable[[str, str], ProxyProcess]
    ClientFactory = Callable[..., ClientDir]

needs_server = pytest.mark.skipif(
    server_unavailable_reason() is not None, reason=server_unavailable_reason() or ""
)
# Outside the Windows "ANSI" code page Wine uses here (1252): with main() instead of
# wmain() these arrive as '?', and no such file exists.
NON_ASCII_DIR = "données-данные-数据"


def send(
    wine: Wine,
    client_dir: Path,
    address: str | int,
    *files: Path | str,
    name: str = "Alice",
    extra: tuple[str, ...] = (),
) -> Run:
    """Runs the .exe in ``client_dir``, its files there too (``--dir`` as a Windows path);
    an int address is a port on 127.0.0.1."""
    if isinstance(address, int):
        address = f"127.0.0.1:{address}"
    args = [str(f) for f in files] + ["--server", address, "--name", name]
    args += ["--dir", windows_path(client_dir), *extra]
    return wine.run(args, cwd=client_dir)


def to_crlf(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


# ============================================================ the executable


def test_exe_is_self_contained(wine: Wine) -> None:
    """libstdc++, libgcc, winpthread and Crypto++ are linked in: only Windows' own DLLs."""
    if shutil.which(MINGW_OBJDUMP) is None:
        pytest.skip(f"{MINGW_OBJDUMP} is missing (apt-get install g++-mingw-w64-x86-64)")
    assert imported_dlls(EXE) <= SYSTEM_DLLS, imported_dlls(EXE) - SYSTEM_DLLS


def test_help_and_version_exit_0(wine: Wine, client_dir: Path) -> None:
    run = wine.run(["--version"], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    assert run.stdout == "eft-client-cpp 1.0 (protocol version 3)\n"
    run = wine.run(["--help"], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    assert "Exit codes: 0 ok" in run.stdout


# ============================================================ against eft-server


@needs_server
def test_register_multi_packet_then_reconnect(
    wine: Wine, client_dir: Path, server: ServerProcess
) -> None:
    payload = write_file(client_dir / "report.bin", 200_000)
    first = send(wine, client_dir, server.address, "report.bin", extra=("--packet-size", "4096"))
    assert first.returncode == EXIT_OK, first.describe()
    assert "registered; client id" in first.stdout
    assert "49 packet(s) of up to 4096 bytes" in first.stdout  # 200016 ciphertext bytes
    name, client_id, key_b64 = read_me_info(client_dir)
    assert name == "Alice" and len(client_id) == 32
    assert server.stored(client_id, "report.bin").read_bytes() == payload
    key = RSA.import_key(base64.b64decode(key_b64))
    assert key.has_private() and key.e == 17 and key.size_in_bits() == 1024
    # Written through a temporary file and MoveFileExW: nothing else is left behind.
    assert sorted(p.name for p in client_dir.iterdir()) == ["me.info", "priv.key", "report.bin"]
    # A DACL with one entry, for the user running the client. Wine turns a DACL into Unix
    # permissions, an entry for the user into the owner's and the group's bits (it cannot
    # tell the groups apart): the user may read and write, others nothing. (Before, with
    # an "owner rights" entry, Wine made the files 000: unreadable to the user himself.)
    for private in ("me.info", "priv.key"):
        mode = (client_dir / private).stat().st_mode
        assert mode & 0o600 == 0o600 and mode & 0o007 == 0, (private, oct(mode))
    me_info = (client_dir / "me.info").read_bytes()

    (client_dir / "report.bin").write_bytes(payload[::-1])
    second = send(wine, client_dir, server.address, "report.bin")
    assert second.returncode == EXIT_OK, second.describe()
    assert "reconnected" in second.stdout
    assert (client_dir / "me.info").read_bytes() == me_info
    assert server.stored(client_id, "report.bin").read_bytes() == payload[::-1]


@needs_server
def test_config_files_with_windows_line_endings(
    wine: Wine, client_dir: Path, server: ServerProcess
) -> None:
    """transfer.info and me.info as a Windows editor saves them: CRLF line endings."""
    (client_dir / "in").mkdir()
    first = write_file(client_dir / "in" / "first.txt", 3000)
    # A relative path with a backslash, relative to the config directory.
    (client_dir / "transfer.info").write_bytes(
        f"{server.address}\r\nBob\r\nin\\first.txt\r\n".encode()
    )
    run = wine.run([], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "first.txt").read_bytes() == first

    to_crlf(client_dir / "me.info")
    second = write_file(client_dir / "second.dat", 70_000, seed=2)
    run = wine.run(["second.dat", "--packet-size", "16384"], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    assert "reconnected" in run.stdout
    assert server.stored(client_id, "second.dat").read_bytes() == second


@needs_server
def test_drive_letter_path_stored_under_its_base_name(
    wine: Wine, client_dir: Path, tmp_path: Path, server: ServerProcess
) -> None:
    (tmp_path / "outbox" / "q3").mkdir(parents=True)
    payload = write_file(tmp_path / "outbox" / "q3" / "ledger.csv", 5000, seed=5)
    path = windows_path(tmp_path / "outbox" / "q3" / "ledger.csv")
    assert path.startswith("Z:\\") and "/" not in path
    (client_dir / "transfer.info").write_text(f"{server.address}\nCarol\n{path}\n")
    run = wine.run([], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "ledger.csv").read_bytes() == payload
    assert sorted(p.name for p in server.stored(client_id, "x").parent.iterdir()) == ["ledger.csv"]


@needs_server
def test_non_ascii_file_argument(wine: Wine, client_dir: Path, server: ServerProcess) -> None:
    """The arguments arrive as UTF-16 (wmain), not in the ANSI code page."""
    (client_dir / NON_ASCII_DIR).mkdir()
    payload = write_file(client_dir / NON_ASCII_DIR / "report.bin", 1000, seed=6)
    relative = f"{NON_ASCII_DIR}\\report.bin"
    run = send(wine, client_dir, server.address, relative)
    assert run.returncode == EXIT_OK, run.describe()
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "report.bin").read_bytes() == payload
    # The same file by its absolute Windows path.
    absolute = windows_path(client_dir / NON_ASCII_DIR / "report.bin")
    run = send(wine, client_dir, server.address, absolute)
    assert run.returncode == EXIT_OK, run.describe()
    assert "reconnected" in run.stdout


@needs_server
def test_identity_in_the_per_user_directory(
    wine: Wine, client_dir: Path, tmp_path: Path, server: ServerProcess
) -> None:
    """Without --dir and without the seed's files, the identity lives in the per-user
    directory, one per server (docs/IDENTITY.md), here under a non-ASCII path as a
    Windows user name would give it: the environment is read in UTF-16."""
    config_home = tmp_path / NON_ASCII_DIR / "config"
    payload = write_file(client_dir / "f.bin", 100)
    args = ["f.bin", "--server", server.address, "--name", "Frank"]
    run = wine.run(args, cwd=client_dir, config_home=config_home)
    assert run.returncode == EXIT_OK, run.describe()
    port = server.address.rsplit(":", 1)[1]
    identity = config_home / "eft" / "servers" / f"127.0.0.1_{port}"
    name, client_id, _ = read_me_info(identity)
    assert name == "Frank"
    assert server.stored(client_id, "f.bin").read_bytes() == payload
    assert sorted(p.name for p in client_dir.iterdir()) == ["f.bin"]
    run = wine.run(args, cwd=client_dir, config_home=config_home)
    assert run.returncode == EXIT_OK, run.describe()
    assert "reconnected" in run.stdout


def test_non_ascii_file_name_refused_in_utf8(wine: Wine, client_dir: Path) -> None:
    """A name version 3 cannot carry: refused before connecting (exit 2), and the name
    in the message is the argument's UTF-8, escaped, so it did arrive intact."""
    write_file(client_dir / "résumé-данные.bin", 10)
    with FakeV3Server() as server:
        run = send(wine, client_dir, server.port, "résumé-данные.bin")
    assert run.returncode == EXIT_USAGE, run.describe()
    escaped = "".join(f"\\x{b:02x}" if b > 0x7E else chr(b) for b in "résumé-данные".encode())
    assert escaped in run.stderr, run.describe()
    assert "printable ASCII" in run.stderr
    assert server.requests == []


@needs_server
@pytest.mark.parametrize("answer_901", [False, True], ids=["spec-901", "answer-901"])
def test_crc_fails_once_then_900(
    wine: Wine,
    client_dir: Path,
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    answer_901: bool,
) -> None:
    server = server_factory(*(["--answer-901"] if answer_901 else []))
    proxy = proxy_factory(server.address, "once")
    payload = write_file(client_dir / "flaky.bin", 5000)
    run = send(wine, client_dir, proxy.address, "flaky.bin", extra=("--packet-size", "1024"))
    assert run.returncode == EXIT_OK, run.describe()
    assert "CRC mismatch on attempt 1 of 4" in run.stderr
    assert "attempt 2" not in run.stderr
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "flaky.bin").read_bytes() == payload


@needs_server
def test_crc_always_fails_902_exit_5(
    wine: Wine, client_dir: Path, server: ServerProcess, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(server.address, "always")
    write_file(client_dir / "doomed.bin", 3000)
    run = send(wine, client_dir, proxy.address, "doomed.bin")
    assert run.returncode == EXIT_INTEGRITY, run.describe()
    assert "CRC mismatch on attempt 4 of 4" in run.stderr
    assert "sent 902" in run.stderr
    _, client_id, _ = read_me_info(client_dir)
    assert not server.stored(client_id, "doomed.bin").exists()


@needs_server
def test_name_taken_exit_4(wine: Wine, tmp_path: Path, server: ServerProcess) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for d in (first, second):
        d.mkdir()
        write_file(d / "f.txt", 10)
    assert send(wine, first, server.address, "f.txt", name="Dave").returncode == EXIT_OK
    run = send(wine, second, server.address, "f.txt", name="Dave")
    assert run.returncode == EXIT_REFUSED, run.describe()
    assert "1601" in run.stderr
    assert not (second / "me.info").exists()


@pytest.mark.skipif(
    python_client_unavailable_reason() is not None or server_unavailable_reason() is not None,
    reason=python_client_unavailable_reason() or server_unavailable_reason() or "",
)
def test_me_info_from_python_client_on_linux(
    wine: Wine, server: ServerProcess, client_factory: ClientFactory
) -> None:
    """An identity made by the Python client on Linux, carried to Windows, CRLF and all."""
    python_client = client_factory("Erin", server.address)
    write_file(python_client.path / "a.txt", 100)
    payload = write_file(python_client.path / "b.txt", 5000, seed=4)
    py = python_client.run([python_client.path / "a.txt"])
    assert py.returncode == 0, (py.events, py.stderr)
    to_crlf(python_client.path / "me.info")
    run = send(wine, python_client.path, server.address, "b.txt", name="Erin")
    assert run.returncode == EXIT_OK, run.describe()
    assert "reconnected" in run.stdout
    assert server.stored(python_client.client_id_hex, "b.txt").read_bytes() == payload


# ============================================================ exit codes, scripted


def test_server_error_four_times_exit_6(wine: Wine, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(errors_1607={828: 4})) as server:
        run = send(wine, client_dir, server.port, "f.bin")
    assert run.returncode == EXIT_SERVER, run.describe()
    assert run.stderr.count("server responded with an error") == 4
    assert server.requests.count(828) == 4


def test_identity_of_another_name_kept_exit_9(wine: Wine, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server() as server:
        assert send(wine, client_dir, server.port, "f.bin").returncode == EXIT_OK
        me_info = (client_dir / "me.info").read_bytes()
        sent = len(server.requests)
        run = send(wine, client_dir, server.port, "f.bin", name="Mallory")
        assert run.returncode == EXIT_IDENTITY, run.describe()
        assert len(server.requests) == sent  # refused before sending anything
    assert (client_dir / "me.info").read_bytes() == me_info


def test_usage_errors_exit_2(wine: Wine, client_dir: Path) -> None:
    for args, message in (
        ([], "no server"),
        (["--frobnicate"], "unknown option"),
        (["missing.bin", "--server", "127.0.0.1:1", "--name", "A"], "not found"),
    ):
        run = wine.run(args, cwd=client_dir)
        assert run.returncode == EXIT_USAGE, run.describe()
        assert message in run.stderr
        assert run.stderr.startswith("eft-client-cpp: error: ")


def test_connection_refused_exit_3(wine: Wine, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 1)
    # Bound and not listening for the whole test: connections are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        run = send(wine, client_dir, closed.getsockname()[1], "f.bin")
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "cannot connect" in run.stderr


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs are dropped: a listener with a backlog of 0 and one connection
    already queued (Linux then drops new SYNs until one is accepted, which never happens),
    so a connect() waits until the client gives up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield port


def test_connect_bounded_by_timeout_exit_3(
    wine: Wine, client_dir: Path, unanswered_port: int
) -> None:
    """SO_SNDTIMEO does not bound connect() on Windows; the client waits with select()."""
    write_file(client_dir / "f.bin", 1)
    args = ["f.bin", "--server", f"127.0.0.1:{unanswered_port}", "--name", "A", "--timeout", "1"]
    run = wine.run(args, cwd=client_dir, timeout=60)  # unbounded, Wine's connect() waits on
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "timed out after 1000 ms" in run.stderr


def test_ctrl_c_exit_130(wine: Wine, client_dir: Path) -> None:
    """Wine turns SIGINT into the console's Ctrl-C event, which the C runtime's SIGINT
    handler receives, as on Windows."""
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server(Behaviour(override={825: lambda _: b""})) as server:
        proc = subprocess.Popen(
            wine.command(["f.bin", "--server", server.address, "--name", "Alice"]),
            cwd=client_dir,
            env=wine.env_for(client_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        # Iterating ends at end of file: a client that exits early fails the test.
        said_registering = any(b"registering" in line for line in proc.stdout)
        assert said_registering, f"exited ({proc.wait()}) before registering"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert not (client_dir / "me.info").exists()


def test_reply_timeout_exit_3(wine: Wine, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server(Behaviour(override={825: lambda _: b""})) as server:
        run = send(wine, client_dir, server.port, "f.bin", extra=("--timeout", "1"))
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "timed out waiting for the server" in run.stderr
