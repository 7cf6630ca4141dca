"""End-to-end tests of the C++ client (client/cpp, issue 7).

Every test runs twice: with the release build and with the AddressSanitizer +
UndefinedBehaviorSanitizer build (``client_bin``). Tests in the first part drive the binary
against our Python server (``eft-server``, from the shared fixtures of tests/conftest.py),
through the lab's corrupting proxy where the CRC must fail; the second part uses a scripted
server (``fake_v3_server``) for what a correct server never does on its own: 1607 again and
again, an empty 1606, replies that break the protocol.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from Crypto.PublicKey import RSA

from tests.support.fake_v3_server import Behaviour, FakeV3Server, response

from .helpers import (
    EXIT_CONNECTION,
    EXIT_IDENTITY,
    EXIT_INTEGRITY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SERVER,
    EXIT_USAGE,
    SANITIZER_ENV,
    Run,
    python_client_unavailable_reason,
    read_me_info,
    run_client,
    server_unavailable_reason,
    write_file,
)

if TYPE_CHECKING:
    from tests.support.processes import ClientDir, ProxyProcess, ServerProcess

    ServerFactory = Callable[..., ServerProcess]
    ProxyFactory = Callable[[str, str], ProxyProcess]
    ClientFactory = Callable[..., ClientDir]

SERVER_ERROR_NOTICE = "server responded with an error"
needs_server = pytest.mark.skipif(
    server_unavailable_reason() is not None, reason=server_unavailable_reason() or ""
)
server_modes = pytest.mark.parametrize("answer_901", [False, True], ids=["spec-901", "answer-901"])


def send(
    client_bin: Path,
    client_dir: Path,
    address: str | int,
    *files: Path,
    name: str = "Alice",
    extra: tuple[str, ...] = (),
) -> Run:
    """Runs the C++ client in ``client_dir``, its files there too (``--dir``); an int
    address is a port on 127.0.0.1."""
    if isinstance(address, int):
        address = f"127.0.0.1:{address}"
    args = [str(f) for f in files] + ["--server", address, "--name", name, "--dir", str(client_dir)]
    args += extra
    return run_client(client_bin, args, cwd=client_dir)


# ============================================================ against eft-server
# server_factory / proxy_factory / client_factory come from tests/conftest.py.


@needs_server
def test_register_then_reconnect(client_bin: Path, client_dir: Path, server: ServerProcess) -> None:
    payload = write_file(client_dir / "report.bin", 200_000)
    first = send(client_bin, client_dir, server.address, client_dir / "report.bin")
    assert first.returncode == EXIT_OK, first.describe()
    assert "registered; client id" in first.stdout
    name, client_id, key_b64 = read_me_info(client_dir)
    assert name == "Alice"
    assert len(client_id) == 32 and client_id == client_id.lower()
    assert server.stored(client_id, "report.bin").read_bytes() == payload
    # me.info: 72-column Base64 of PKCS#8 DER that PyCryptodome loads; e = 17, 1024 bits.
    key_lines = (client_dir / "me.info").read_text().splitlines()[2:]
    assert all(len(line) == 72 for line in key_lines[:-1])
    key = RSA.import_key(base64.b64decode(key_b64))
    assert key.has_private() and key.e == 17 and key.size_in_bits() == 1024
    assert len(key.publickey().export_key(format="DER")) == 160
    assert "".join((client_dir / "priv.key").read_text().split()) == key_b64
    # Only the user may read the private key (issue 29), whatever the umask.
    for private in ("me.info", "priv.key"):
        assert (client_dir / private).stat().st_mode & 0o777 == 0o600, private
    assert sorted(p.name for p in client_dir.iterdir()) == ["me.info", "priv.key", "report.bin"]
    me_info = (client_dir / "me.info").read_text()

    (client_dir / "report.bin").write_bytes(payload[::-1])
    second = send(client_bin, client_dir, server.address, client_dir / "report.bin")
    assert second.returncode == EXIT_OK, second.describe()
    assert "reconnected" in second.stdout
    assert (client_dir / "me.info").read_text() == me_info
    assert server.stored(client_id, "report.bin").read_bytes() == payload[::-1]


@needs_server
def test_transfer_info_and_several_files(
    client_bin: Path, client_dir: Path, server: ServerProcess
) -> None:
    (client_dir / "in").mkdir()
    first = write_file(client_dir / "in" / "first.txt", 33)
    second = write_file(client_dir / "second.dat", 70_000, seed=2)
    (client_dir / "transfer.info").write_text(f"{server.address}\r\nBob\r\nin/first.txt\r\n")
    run = run_client(client_bin, [], cwd=client_dir)
    assert run.returncode == EXIT_OK, run.describe()
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "first.txt").read_bytes() == first
    # FILE arguments replace line 3; all files go in one session after one key exchange.
    run = run_client(
        client_bin, ["in/first.txt", "second.dat", "--packet-size", "4096"], cwd=client_dir
    )
    assert run.returncode == EXIT_OK, run.describe()
    assert run.stdout.count("reconnected") == 1
    assert "2 file(s) sent" in run.stdout
    assert server.stored(client_id, "second.dat").read_bytes() == second


@needs_server
def test_empty_file(client_bin: Path, client_dir: Path, server: ServerProcess) -> None:
    (client_dir / "empty").write_bytes(b"")
    run = send(client_bin, client_dir, server.address, client_dir / "empty")
    assert run.returncode == EXIT_OK, run.describe()
    assert "1 packet(s)" in run.stdout
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "empty").read_bytes() == b""


@needs_server
def test_more_than_1000_packets(client_bin: Path, client_dir: Path, server: ServerProcess) -> None:
    payload = write_file(client_dir / "many.bin", 40_000)  # 40016 ciphertext bytes
    run = send(
        client_bin,
        client_dir,
        server.address,
        client_dir / "many.bin",
        extra=("--packet-size", "32"),
    )
    assert run.returncode == EXIT_OK, run.describe()
    assert "1251 packet(s) of up to 32 bytes" in run.stdout
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "many.bin").read_bytes() == payload


@needs_server
@server_modes
def test_crc_fails_once_then_900(
    client_bin: Path,
    client_dir: Path,
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    answer_901: bool,
) -> None:
    server = server_factory(*(["--answer-901"] if answer_901 else []))
    proxy = proxy_factory(server.address, "once")
    payload = write_file(client_dir / "flaky.bin", 5000)
    run = send(
        client_bin,
        client_dir,
        proxy.address,
        client_dir / "flaky.bin",
        extra=("--packet-size", "1024"),
    )
    assert run.returncode == EXIT_OK, run.describe()
    assert "CRC mismatch on attempt 1 of 4" in run.stderr
    assert "attempt 2" not in run.stderr
    assert "CRC ok" in run.stdout
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "flaky.bin").read_bytes() == payload


@needs_server
@server_modes
def test_crc_always_fails_902_exit_5(
    client_bin: Path,
    client_dir: Path,
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    answer_901: bool,
) -> None:
    server = server_factory(*(["--answer-901"] if answer_901 else []))
    proxy = proxy_factory(server.address, "always")
    write_file(client_dir / "doomed.bin", 3000)
    run = send(client_bin, client_dir, proxy.address, client_dir / "doomed.bin")
    assert run.returncode == EXIT_INTEGRITY, run.describe()
    assert "CRC mismatch on attempt 4 of 4" in run.stderr
    assert "sent 902" in run.stderr
    _, client_id, _ = read_me_info(client_dir)
    assert not server.stored(client_id, "doomed.bin").exists()


@needs_server
def test_file_name_rejected_by_server_exit_6(
    client_bin: Path, client_dir: Path, server: ServerProcess
) -> None:
    write_file(client_dir / "bad:name.txt", 100)  # ':' is refused: not storable everywhere
    run = send(client_bin, client_dir, server.address, client_dir / "bad:name.txt")
    assert run.returncode == EXIT_SERVER, run.describe()
    assert run.stderr.count(SERVER_ERROR_NOTICE) == 4
    assert "giving up after 3 retries" in run.stderr


@needs_server
def test_name_taken_exit_4(client_bin: Path, tmp_path: Path, server: ServerProcess) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for d in (first, second):
        d.mkdir()
        write_file(d / "f.txt", 10)
    assert (
        send(client_bin, first, server.address, first / "f.txt", name="Carol").returncode == EXIT_OK
    )
    run = send(client_bin, second, server.address, second / "f.txt", name="Carol")
    assert run.returncode == EXIT_REFUSED, run.describe()
    assert "1601" in run.stderr
    assert not (second / "me.info").exists()


# ------------------------------------------------------------ with the Python client

needs_python_client = pytest.mark.skipif(
    python_client_unavailable_reason() is not None or server_unavailable_reason() is not None,
    reason=python_client_unavailable_reason() or server_unavailable_reason() or "",
)


@needs_python_client
def test_me_info_from_cpp_works_in_python_client(
    client_bin: Path, server: ServerProcess, client_factory: ClientFactory
) -> None:
    python_client = client_factory("Alice", server.address)
    write_file(python_client.path / "a.txt", 100)
    payload = write_file(python_client.path / "b.txt", 5000, seed=3)
    assert (
        send(
            client_bin, python_client.path, server.address, python_client.path / "a.txt"
        ).returncode
        == EXIT_OK
    )
    me_info = (python_client.path / "me.info").read_text()
    client_id = python_client.client_id_hex
    py = python_client.run([python_client.path / "b.txt"])
    assert py.returncode == 0, (py.events, py.stderr)
    assert (python_client.path / "me.info").read_text() == me_info  # reconnected, not re-registered
    assert server.stored(client_id, "b.txt").read_bytes() == payload


@needs_python_client
def test_me_info_from_python_client_works_in_cpp(
    client_bin: Path, server: ServerProcess, client_factory: ClientFactory
) -> None:
    python_client = client_factory("Dave", server.address)
    write_file(python_client.path / "a.txt", 100)
    payload = write_file(python_client.path / "b.txt", 5000, seed=4)
    py = python_client.run([python_client.path / "a.txt"])
    assert py.returncode == 0, (py.events, py.stderr)
    me_info = (python_client.path / "me.info").read_text()
    client_id = python_client.client_id_hex
    run = send(
        client_bin, python_client.path, server.address, python_client.path / "b.txt", name="Dave"
    )
    assert run.returncode == EXIT_OK, run.describe()
    assert "reconnected" in run.stdout
    assert (python_client.path / "me.info").read_text() == me_info
    assert server.stored(client_id, "b.txt").read_bytes() == payload


# ============================================================ against a scripted server


@pytest.mark.parametrize("request_code", [825, 826, 828, 900])
def test_1607_four_times_exit_6(client_bin: Path, client_dir: Path, request_code: int) -> None:
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(errors_1607={request_code: 4})) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_SERVER, run.describe()
    assert run.stderr.count(SERVER_ERROR_NOTICE) == 4
    assert server.requests.count(request_code) == 4
    assert not server.errors


@pytest.mark.parametrize("request_code", [825, 827, 828, 900])
def test_1607_three_times_then_success(
    client_bin: Path, client_dir: Path, request_code: int
) -> None:
    payload = write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(errors_1607={request_code: 3})) as server:
        if request_code == 827:  # a returning client
            assert (
                send(client_bin, client_dir, server.port, client_dir / "f.bin").returncode
                == EXIT_OK
            )
        run = send(
            client_bin, client_dir, server.port, client_dir / "f.bin", extra=("--packet-size", "48")
        )
    assert run.returncode == EXIT_OK, run.describe()
    assert run.stderr.count(SERVER_ERROR_NOTICE) == 3
    packets = 3 if request_code == 828 else 1  # 112 ciphertext bytes in 48-byte slices
    assert server.requests.count(request_code) == 4 * packets
    _, client_id, _ = read_me_info(client_dir)
    assert server.files[(client_id, "f.bin")] == payload
    assert not server.errors


@pytest.mark.parametrize("empty_1606", [False, True], ids=["1606-with-id", "1606-empty"])
def test_unknown_client_registers_again_only_when_asked(
    client_bin: Path, client_dir: Path, empty_1606: bool
) -> None:
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(empty_1606=empty_1606)) as server:
        assert send(client_bin, client_dir, server.port, client_dir / "f.bin").returncode == EXIT_OK
        _, old_id, old_key = read_me_info(client_dir)
        server.clients.clear()  # the server forgot us (a restart without a database)
        denied = send(client_bin, client_dir, server.port, client_dir / "f.bin")
        assert denied.returncode == EXIT_IDENTITY, denied.describe()
        assert read_me_info(client_dir)[1] == old_id  # a 1606 is not authenticated: kept
        run = send(
            client_bin, client_dir, server.port, client_dir / "f.bin", extra=("--re-register",)
        )
    assert run.returncode == EXIT_OK, run.describe()
    assert "1606" in run.stdout
    _, new_id, new_key = read_me_info(client_dir)
    assert new_id != old_id and new_key != old_key
    assert server.requests == [825, 826, 828, 900, 827, 827, 825, 826, 828, 900]
    assert len(list(client_dir.glob("me.info.replaced-*"))) == 1


@pytest.mark.parametrize("wrap", [64, 76, 10_000])
def test_me_info_written_by_python(client_bin: Path, client_dir: Path, wrap: int) -> None:
    """A PyCryptodome key (PKCS#8 DER, Base64 wrapped at any width, CRLF, NUL-padded name)."""
    key = RSA.generate(1024, e=17)
    payload = write_file(client_dir / "f.bin", 777)
    with FakeV3Server() as server:
        cid = server.register("Erin", key)
        b64 = base64.b64encode(key.export_key(format="DER", pkcs=8)).decode()
        lines = ["Erin\0\0", cid.hex(), *textwrap.wrap(b64, wrap)]
        (client_dir / "me.info").write_bytes("\r\n".join(lines).encode() + b"\r\n")
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin", name="Erin")
    assert run.returncode == EXIT_OK, run.describe()
    assert server.requests == [827, 828, 900]
    assert server.files[(cid.hex(), "f.bin")] == payload


def test_901_answered_with_1604_is_skipped(client_bin: Path, client_dir: Path) -> None:
    payload = write_file(client_dir / "f.bin", 1000)
    with FakeV3Server(Behaviour(answer_901=True, corrupt_crc=3)) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_OK, run.describe()
    assert server.requests == [825, 826, 828, 901, 828, 901, 828, 901, 828, 900]
    _, client_id, _ = read_me_info(client_dir)
    assert server.files[(client_id, "f.bin")] == payload


@pytest.mark.parametrize("file_name", ["résumé.bin", "tab\there.bin"], ids=["non-ascii", "control"])
def test_unsendable_file_name_refused_before_connecting(
    client_bin: Path, client_dir: Path, file_name: str
) -> None:
    # The Python client's rule and exit code (ConfigError, 2); before issue 29 the C++
    # client sent résumé.bin four times, each answered 1607, then exited 6.
    write_file(client_dir / file_name, 100)
    with FakeV3Server() as server:
        run = send(client_bin, client_dir, server.port, client_dir / file_name)
    assert run.returncode == EXIT_USAGE, run.describe()
    assert "printable ASCII" in run.stderr
    assert server.requests == []


def _hostile_name(reply: bytes) -> bytes:
    """The 1603 with a file name that would retitle and clear the user's terminal."""
    name = b"\x1b]0;owned\x07\x1b[2J\x9b1m"
    payload = reply[7:27] + name + bytes(255 - len(name)) + reply[-4:]
    return reply[:3] + len(payload).to_bytes(4, "little") + payload


def test_file_name_echoed_by_server_printed_escaped(client_bin: Path, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(override={828: _hostile_name})) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_OK, run.describe()
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b1m" in run.stderr
    assert "\x1b" not in run.stderr + run.stdout
    assert "\x07" not in run.stderr + run.stdout


# A regular file whose read fails (EINVAL): the loopback interface has no link speed.
UNREADABLE = Path("/sys/class/net/lo/speed")


def _read_fails(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return path.is_file() and path.stat().st_size > 0
    return False


@pytest.mark.skipif(not _read_fails(UNREADABLE), reason=f"{UNREADABLE} reads without an error here")
def test_read_error_while_sending_reported_as_such(client_bin: Path, client_dir: Path) -> None:
    with FakeV3Server() as server:
        run = send(client_bin, client_dir, server.port, UNREADABLE)
    assert run.returncode == EXIT_USAGE, run.describe()  # as the Python client: ConfigError
    assert f"cannot read {UNREADABLE}: Invalid argument" in run.stderr
    assert "shorter" not in run.stderr


def _oversized(_: bytes) -> bytes:
    return response(1600)[:3] + (0xFFFFFFFF).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("code", "override", "message"),
    [
        (825, _oversized, "4294967295-byte payload"),
        (825, lambda r: response(1600, b"\x01" * 15), "15-byte payload"),
        (826, lambda r: response(1602, r[7:-1]), "143-byte payload"),
        (826, lambda r: r[:7] + r[7:23] + bytes(128), "cannot use the AES key"),
        (825, lambda r: b"\x02" + r[1:], "version 2"),
        (825, lambda r: response(1700), "unknown response code 1700"),
        (828, lambda r: response(1604, r[7:23]), "unexpected response 1604"),
        (828, lambda r: response(1603, r[7:-2]), "277-byte payload"),
        (900, lambda r: response(1603, bytes(279)), "unexpected response 1603"),
        (825, lambda r: response(1606, bytes(16)), "unexpected response 1606"),
    ],
    ids=[
        "huge-size",
        "short-1600",
        "short-1602",
        "bad-oaep",
        "version",
        "unknown-code",
        "1604-not-1603",
        "short-1603",
        "1603-not-1604",
        "1606-to-825",
    ],
)
def test_protocol_violation_exit_6(
    client_bin: Path, client_dir: Path, code: int, override, message: str
) -> None:  # type: ignore[no-untyped-def]
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(override={code: override})) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_SERVER, run.describe()
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_refused_registration_exit_4(client_bin: Path, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 1)
    with FakeV3Server(Behaviour(refuse_names={"Alice"})) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_REFUSED, run.describe()
    assert not (client_dir / "me.info").exists()


@pytest.mark.parametrize("code", [825, 826, 828])
def test_connection_lost_exit_3(client_bin: Path, client_dir: Path, code: int) -> None:
    write_file(client_dir / "f.bin", 100)
    with FakeV3Server(Behaviour(close_on={code})) as server:
        run = send(client_bin, client_dir, server.port, client_dir / "f.bin")
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "closed the connection" in run.stderr or "failed" in run.stderr


def test_cannot_connect_exit_3(client_bin: Path, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 1)
    # Bound and not listening for the whole test: connections are refused, and the port
    # cannot be taken by anything else meanwhile (a port closed before use could be).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        run = send(client_bin, client_dir, closed.getsockname()[1], client_dir / "f.bin")
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "cannot connect" in run.stderr


@pytest.mark.parametrize(
    ("files", "setup", "message"),
    [
        ({}, None, "no server"),
        ({"transfer.info": "127.0.0.1:1\nAlice\nmissing.bin\n"}, None, "not found"),
        ({"transfer.info": "localhost\nAlice\nf.bin\n"}, None, "transfer.info line 1"),
        ({"transfer.info": "127.0.0.1:1\n" + "x" * 101 + "\nf.bin\n"}, None, "at most 100"),
        (
            {"transfer.info": "127.0.0.1:1\nAlice\nf.bin\n", "me.info": "Alice\nnot-an-id\nAAAA\n"},
            None,
            "client id",
        ),
        (
            {
                "transfer.info": "127.0.0.1:1\nAlice\nf.bin\n",
                "me.info": "Alice\n" + "ab" * 16 + "\nAAAA\n",
            },
            None,
            "private key",
        ),
        ({"transfer.info": "127.0.0.1:1\nAlice\n"}, None, "no file to send"),
        ({"transfer.info": "127.0.0.1:1\nAlice\nf.bin\n"}, ["--packet-size", "0"], "--packet-size"),
        ({"transfer.info": "127.0.0.1:1\nAlice\nf.bin\n"}, ["--frobnicate"], "unknown option"),
        ({"transfer.info": "127.0.0.1:1\nAlice\nf.bin\n"}, ["--dir", "nowhere"], "does not exist"),
    ],
    ids=[
        "nothing",
        "missing-file",
        "bad-endpoint",
        "long-name",
        "bad-id",
        "bad-key",
        "no-file",
        "packet-size",
        "bad-flag",
        "bad-dir",
    ],
)
def test_configuration_errors_exit_2(
    client_bin: Path, client_dir: Path, files: dict[str, str], setup: list[str] | None, message: str
) -> None:
    write_file(client_dir / "f.bin", 10)
    for name, text in files.items():
        (client_dir / name).write_text(text)
    run = run_client(client_bin, setup or [], cwd=client_dir)
    assert run.returncode == EXIT_USAGE, run.describe()
    assert message in run.stderr
    assert run.stderr.startswith("eft-client-cpp: error: ")


def _silent(_: bytes) -> bytes:
    return b""  # the server says nothing: the client waits


def test_network_timeout_exit_3(client_bin: Path, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server(Behaviour(override={825: _silent})) as server:
        run = send(
            client_bin, client_dir, server.port, client_dir / "f.bin", extra=("--timeout", "1")
        )
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "timed out waiting for the server" in run.stderr


def test_reply_deadline_bounds_the_whole_reply(client_bin: Path, client_dir: Path) -> None:
    # One byte every 0.25 s: each read is quick, but the 23-byte 1600 takes ~6 s, far
    # past --timeout 1. Before issue 29 the time-out bounded each read, so the client
    # took the reply (and a server could hold it for hours at one byte a minute).
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server(Behaviour(dribble={825: 0.25})) as server:
        run = send(
            client_bin, client_dir, server.port, client_dir / "f.bin", extra=("--timeout", "1")
        )
    assert run.returncode == EXIT_CONNECTION, run.describe()
    assert "timed out waiting for the server" in run.stderr
    assert server.requests == [825]


def test_ctrl_c_exit_130(client_bin: Path, client_dir: Path) -> None:
    write_file(client_dir / "f.bin", 10)
    with FakeV3Server(Behaviour(override={825: _silent})) as server:
        proc = subprocess.Popen(
            [str(client_bin), "f.bin", "--server", server.address, "--name", "Alice"],
            cwd=client_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, **SANITIZER_ENV),
        )
        assert proc.stdout is not None
        # Iterating ends at end of file: a client that exits early fails the test
        # instead of spinning on empty reads until pytest's timeout.
        said_registering = any("registering" in line for line in proc.stdout)
        assert said_registering, f"exited ({proc.wait()}) before registering"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert not (client_dir / "me.info").exists()


@needs_server
def test_packet_size_grows_within_65535_packets(
    client_bin: Path, client_dir: Path, server: ServerProcess
) -> None:
    # 70016 ciphertext bytes: 70016 one-byte packets would be too many.
    payload = write_file(client_dir / "grow.bin", 70_000)
    run = send(
        client_bin,
        client_dir,
        server.address,
        client_dir / "grow.bin",
        extra=("--packet-size", "1"),
    )
    assert run.returncode == EXIT_OK, run.describe()
    assert "packet size raised to 16 bytes" in run.stdout
    assert "4376 packet(s)" in run.stdout
    _, client_id, _ = read_me_info(client_dir)
    assert server.stored(client_id, "grow.bin").read_bytes() == payload
