"""docs/IDENTITY.md as one table of cases, run against both clients.

Every case runs against the Python client and the C++ client (each build that exists):
where the identity lives, that it is saved before the message that binds it, that no
unauthenticated answer destroys it, and that both clients refuse the same things with the
same exit code. The scripted server (tests/support/fake_v3_server.py) forges the answers;
the version-4 cases (the Python client only: the C++ client speaks version 3) use the
real server.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from eft_protocol.codes import RESPONSE_HEADER
from eft_protocol.v4.handshake import SERVER_HELLO_SIZE
from tests.attacks.conftest import fingerprint_of
from tests.cpp.helpers import BUILDS, SANITIZER_ENV
from tests.support.fake_v3_server import Behaviour, FakeV3Server, response
from tests.support.processes import ServerProcess, clean_env

CLIENTS = ["python", *(f"cpp-{build}" for build in sorted(BUILDS))]
OTHER_ID = bytes(range(100, 116))


@dataclass
class Result:
    returncode: int
    output: str


@dataclass
class Client:
    """One of the two clients, run as a user would: in a working directory, with a home."""

    kind: str
    home: Path

    def run(
        self,
        server: str,
        name: str,
        *args: str,
        cwd: Path,
        config_dir: Path | None = None,
        protocol: int = 3,
    ) -> Result:
        payload = cwd / "payload.bin"
        if not payload.exists():
            payload.write_bytes(b"identity lifecycle\n" * 50)
        env = {
            **clean_env(),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
        }
        if self.kind == "python":
            command = [sys.executable, "-m", "eft_client", "--json", "--protocol", str(protocol)]
            if config_dir is not None:
                command += ["--config-dir", str(config_dir)]
        else:
            assert protocol == 3, "the C++ client speaks version 3"
            command = [str(BUILDS[self.kind.removeprefix("cpp-")])]
            env.update(SANITIZER_ENV)
            if config_dir is not None:
                command += ["--dir", str(config_dir)]
        command += ["--server", server, "--name", name, *args, str(payload)]
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(done.returncode, done.stdout + done.stderr)

    def server_dir(self, server: FakeV3Server | ServerProcess) -> Path:
        host, _, port = server.address.rpartition(":")
        return self.home / "config" / "eft" / "servers" / f"{host}_{port}"


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Client:
    kind = request.param
    if kind != "python" and not BUILDS[kind.removeprefix("cpp-")].is_file():
        pytest.skip(f"{BUILDS[kind.removeprefix('cpp-')]} is not built (client/cpp/build.sh)")
    home = tmp_path / "home"
    home.mkdir()
    return Client(kind, home)


def workdir(tmp_path: Path, name: str = "work") -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def client_id(directory: Path, me_info: str = "me.info") -> str:
    return (directory / me_info).read_text().splitlines()[1].strip()


# --- where the identity lives --------------------------------------------------------


def test_without_a_directory_the_identity_is_per_user_and_per_server(
    client: Client, tmp_path: Path
) -> None:
    """A second working directory uses the same identity; a second server its own."""
    first, second = workdir(tmp_path, "first"), workdir(tmp_path, "second")
    with FakeV3Server() as one, FakeV3Server() as other:
        assert client.run(one.address, "alice", cwd=first).returncode == 0
        run = client.run(one.address, "alice", cwd=second)
        assert run.returncode == 0, run.output
        assert one.requests.count(825) == 1 and one.requests.count(827) == 1
        assert client.run(other.address, "alice", cwd=second).returncode == 0
    assert not (first / "me.info").exists() and not (second / "me.info").exists()
    ids = {client_id(client.server_dir(s)) for s in (one, other)}
    assert len(ids) == 2  # one identity per server
    assert (client.server_dir(one) / "priv.key").stat().st_mode & 0o077 == 0


def test_the_seeds_me_info_in_the_working_directory_is_honoured(
    client: Client, tmp_path: Path
) -> None:
    here = workdir(tmp_path)
    with FakeV3Server() as server:
        assert client.run(server.address, "alice", cwd=here, config_dir=here).returncode == 0
        first_id = client_id(here)
        run = client.run(server.address, "alice", cwd=here)  # no directory given
        assert run.returncode == 0, run.output
        assert server.requests[-3] == 827  # 827, 828, 900: reconnected with it
    assert client_id(here) == first_id
    assert not client.server_dir(server).exists()


def test_a_working_directory_with_transfer_info_keeps_me_info_beside_it(
    client: Client, tmp_path: Path
) -> None:
    """The seed's layout: transfer.info here, so me.info is written here too."""
    here = workdir(tmp_path)
    with FakeV3Server() as server:
        (here / "transfer.info").write_text(f"{server.address}\nalice\npayload.bin\n")
        run = client.run(server.address, "alice", cwd=here)
        assert run.returncode == 0, run.output
    assert client_id(here) == next(iter(server.clients)).hex()
    assert not client.server_dir(server).exists()


# --- created and saved before the message that binds it -------------------------------


def test_the_key_is_saved_before_the_826_that_binds_it(client: Client, tmp_path: Path) -> None:
    here = workdir(tmp_path)
    with FakeV3Server(Behaviour(close_on={826})) as server:
        run = client.run(server.address, "alice", *_no_retries(client), cwd=here, config_dir=here)
        assert run.returncode == ExitCode.CANNOT_CONNECT, run.output
        (assigned,) = server.clients  # the id of the 1600
    assert client_id(here) == assigned.hex()
    assert (here / "priv.key").exists()


def _no_retries(client: Client) -> tuple[str, ...]:
    return ("--retries", "0") if client.kind == "python" else ()


# --- never destroyed on the word of an unauthenticated answer -------------------------


def test_a_forged_1606_keeps_the_identity_and_only_re_register_replaces_it(
    client: Client, tmp_path: Path
) -> None:
    here = workdir(tmp_path)
    with FakeV3Server() as server:
        assert client.run(server.address, "alice", cwd=here, config_dir=here).returncode == 0
        before = files_of(here)
        server.clients.clear()  # every later 827 gets 1606, as a forger would answer
        sent = len(server.requests)
        denied = client.run(server.address, "alice", cwd=here, config_dir=here)
        assert denied.returncode == ExitCode.IDENTITY, denied.output
        assert "1606" in denied.output and "--re-register" in denied.output
        assert server.requests[sent:] == [827]  # no 825: a forged 1600 has nothing to answer
        assert files_of(here) == before
        again = client.run(server.address, "alice", "--re-register", cwd=here, config_dir=here)
        assert again.returncode == 0, again.output
    kept = {p.name.split(".replaced-")[0]: p.read_bytes() for p in here.glob("*.replaced-*")}
    assert kept == {"me.info": before["me.info"], "priv.key": before["priv.key"]}
    assert client_id(here) != before["me.info"].decode().splitlines()[1]


def test_a_name_other_than_the_identitys_is_refused_and_nothing_is_sent(
    client: Client, tmp_path: Path
) -> None:
    here = workdir(tmp_path)
    with FakeV3Server() as server:
        assert client.run(server.address, "Bob", cwd=here, config_dir=here).returncode == 0
        before, sent = files_of(here), len(server.requests)
        run = client.run(server.address, "Carol", cwd=here, config_dir=here)
        assert run.returncode == ExitCode.IDENTITY, run.output
        assert "Bob" in run.output and "Carol" in run.output
        assert server.requests[sent:] == [] and files_of(here) == before
        run = client.run(server.address, "Carol", "--re-register", cwd=here, config_dir=here)
        assert run.returncode == 0, run.output
        assert server.requests[sent:][:2] == [825, 826]
    assert (here / "me.info").read_text().splitlines()[0] == "Carol"
    assert len(list(here.glob("me.info.replaced-*"))) == 1


# --- answers that are refused ----------------------------------------------------------


def _with_other_id(reply: bytes) -> bytes:
    header = RESPONSE_HEADER.size
    return reply[:header] + OTHER_ID + reply[header + len(OTHER_ID) :]


@pytest.mark.parametrize("answer", [1602, 1605])
def test_a_key_answer_carrying_another_clients_id_is_refused(
    client: Client, tmp_path: Path, answer: int
) -> None:
    here = workdir(tmp_path)
    request = 826 if answer == 1602 else 827
    with FakeV3Server() as server:
        if answer == 1605:
            assert client.run(server.address, "alice", cwd=here, config_dir=here).returncode == 0
        before, sent = files_of(here), len(server.requests)
        server.behaviour.override[request] = _with_other_id
        run = client.run(server.address, "alice", *_no_retries(client), cwd=here, config_dir=here)
    assert run.returncode == ExitCode.SERVER_ERROR, run.output
    assert 828 not in server.requests[sent:]  # no file under a key meant for another
    if answer == 1605:
        assert files_of(here) == before


def test_an_all_zero_id_in_1600_is_refused_and_nothing_is_saved(
    client: Client, tmp_path: Path
) -> None:
    here = workdir(tmp_path)
    zero = response(1600, bytes(16))
    with FakeV3Server(Behaviour(override={825: lambda _reply: zero})) as server:
        run = client.run(server.address, "alice", cwd=here, config_dir=here)
        assert 826 not in server.requests
    assert run.returncode == ExitCode.SERVER_ERROR, run.output
    assert not (here / "me.info").exists()


# --- version 4 (the Python client) ------------------------------------------------------


class _CutAfterFirstAnswer:
    """A TCP relay that drops the first connection right after passing the server's
    first message (the handshake's message 2): the 1600 that follows never arrives.
    Later connections are relayed whole."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            far = socket.create_connection(self.target)
            cut = self.connections == 1
            for args in ((near, far, False), (far, near, cut)):
                thread = threading.Thread(target=self._pipe, args=args, daemon=True)
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, cut: bool) -> None:
        """Copy ``source`` to ``sink``; with ``cut``, only the server's first message: the
        next answer (the 1600) is dropped and both connections are closed."""
        first = RESPONSE_HEADER.size + SERVER_HELLO_SIZE
        passed = 0
        try:
            while data := source.recv(65536):
                if cut:
                    if passed >= first:
                        break  # the 1600: lost
                    data = data[: first - passed]
                    passed += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def cut_relay() -> Iterator[Callable[[str], _CutAfterFirstAnswer]]:
    relays: list[_CutAfterFirstAnswer] = []

    def make(target: str) -> _CutAfterFirstAnswer:
        relays.append(_CutAfterFirstAnswer(target))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


def test_v4_a_lost_1600_keeps_the_name(
    server: ServerProcess,
    cut_relay: Callable[[str], _CutAfterFirstAnswer],
    tmp_path: Path,
) -> None:
    """The key is in me4.info before the 825 leaves: the run that lost its 1600 and the
    next run hold the key the name was bound to, so the name is not lost."""
    python = Client("python", tmp_path)
    here = workdir(tmp_path)
    relay = cut_relay(server.address)
    fingerprint = ("--server-fingerprint", fingerprint_of(server))
    lost = python.run(
        relay.address,
        "alice",
        "--retries",
        "0",
        *fingerprint,
        cwd=here,
        config_dir=here,
        protocol=4,
    )
    assert lost.returncode == ExitCode.CANNOT_CONNECT, lost.output
    saved = client_id(here, "me4.info")
    later = python.run(server.address, "alice", *fingerprint, cwd=here, config_dir=here, protocol=4)
    assert later.returncode == 0, later.output
    assert '"reconnected"' in later.output  # the server had bound alice to the saved key
    assert client_id(here, "me4.info") == saved


def test_v4_a_name_other_than_the_identitys_is_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    python = Client("python", tmp_path)
    here = workdir(tmp_path)
    assert python.run(server.address, "Bob", cwd=here, config_dir=here, protocol=4).returncode == 0
    before = files_of(here)
    run = python.run(server.address, "Carol", cwd=here, config_dir=here, protocol=4)
    assert run.returncode == ExitCode.IDENTITY, run.output
    assert files_of(here) == before
    run = python.run(
        server.address, "Carol", "--re-register", cwd=here, config_dir=here, protocol=4
    )
    assert run.returncode == 0, run.output
    (kept,) = here.glob("me4.info.replaced-*")
    assert kept.read_bytes() == before["me4.info"]
    assert (here / "me4.info").read_text().startswith("Carol\n")
