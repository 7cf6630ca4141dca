"""Attack tests: real server and client processes, and ``eft-attack`` as a real program.

Every test takes ``version`` (the protocol the target speaks) from the ``version``
fixture and runs once per entry of ``VERSIONS``. For version 4 the server runs with
``--legacy deny`` (nothing of version 3 is reachable), the victims run our client with
``--protocol 4``, and every attack is started with ``--protocol 4``, which makes it
attempt the version-4 form of the same attack. ``EXPECTED`` says, per finding and
version, whether the attack must succeed against our server; a ``True`` for version 4
is a weakness version 4 does not close (docs/SECURITY.md says why).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eft_lab.processes import clean_env, wait_for_port
from tests.support.processes import ClientDir, ClientRun, ServerProcess

VERSIONS = [3, 4]

#: How to start our server so that it speaks ``version`` and nothing older; our server
#: speaks 3 and 4 on one port, ``--legacy deny`` turns version 3 off.
SERVER_ARGS: dict[int, tuple[str, ...]] = {3: (), 4: ("--legacy", "deny")}

#: Whether each attack succeeds against our server, per protocol version. A ``False``
#: for version 3 means our server already mitigates what the protocol permits.
EXPECTED: dict[str, dict[int, bool]] = {
    "EFT-01 mitm key swap": {3: True, 4: False},  # v4: the pinned key stops the client
    "EFT-01 mitm at first contact": {3: True, 4: True},  # v4: TOFU trusts the first key
    "EFT-02 spoofed id on another connection": {3: False, 4: False},
    "EFT-02 verdict rewritten in transit": {3: True, 4: False},
    "EFT-03 key claimed from another connection": {3: False, 4: False},  # v3: our server
    "EFT-04 reconnect rotates the victim's key": {3: False, 4: False},
    "EFT-04 reconnects fill the victim's session cap": {3: True, 4: False},
    "EFT-05 blind overwrite after a spoofed reconnect": {3: True, 4: False},
    "EFT-06 padding oracle on a hijacked connection": {3: True, 4: False},
    "EFT-06 padding oracle under a spoofed id": {3: False, 4: False},
    "EFT-07 bit flip with the CRC kept equal": {3: True, 4: False},
    "EFT-08 plaintext from the cksum": {3: True, 4: False},
    "EFT-09 replay on a hijacked connection": {3: True, 4: False},
    "EFT-09 replay on a new connection": {3: False, 4: False},
    "EFT-10 equal beginnings encrypt equally": {3: True, 4: False},
    "EFT-11 weak RSA parameters": {3: True, 4: False},
    "EFT-12 recorded sessions decrypt with a stolen key": {3: True, 4: False},
    "EFT-13 names enumerated and squatted": {3: True, 4: True},  # open registration
    "EFT-13 names freed by a restart": {3: True, 4: True},  # with --ephemeral only
    "EFT-14 path traversal": {3: False, 4: False},
    # With --when-full refuse (the old behaviour): the cap cannot tell a flood from clients.
    "EFT-15 connection flood locks clients out": {3: True, 4: True},
    # The default --when-full shed: unauthenticated connections give way to newcomers.
    "EFT-15 idle sockets lock clients out": {3: False, 4: False},
    # Under load (--cookies-above) a message 1 without a valid cookie gets a cookie reply.
    "EFT-15 message 1 flood buys the server's DH": {4: False},  # v3 has no message 1
    # v4: a file larger than the free space (less --keep-free) is refused before its data.
    "EFT-15 oversized file accepted without quota": {3: True, 4: False},
    "EFT-15 oversized fixed-size request": {3: False, 4: False},
    "EFT-15 registration flood": {3: True, 4: True},  # open registration
    "EFT-15 slow peer after registering": {3: False, 4: False},  # v3: whole-frame deadline
    "EFT-15 slow peer before the handshake": {3: False, 4: False},
    "EFT-16 forged version refusal": {3: True, 4: False},
    "EFT-17 metadata in the clear": {3: True, 4: False},  # v4 still shows sizes and ids
    "EFT-18 session keys at rest on the server": {3: False, 4: False},  # v3: written NULL
    # v3: the protocol still lets anyone answer 1606; our clients keep the identity and
    # stop (docs/IDENTITY.md). v4: the pin.
    "EFT-19 forged 1606 replaces the client's identity": {3: False, 4: False},
    "EFT-20 impostor reads every file": {3: True, 4: False},  # v4: the pin (TOFU: EFT-01)
    "EFT-21 a stalling server holds the client": {3: False, 4: False},  # client: deadlines
    "EFT-22 a server makes the client send a file again and again": {3: True, 4: False},
    "EFT-23 a server lies about the part of a file it holds": {3: False, 4: False},  # digest
    "EFT-24 hostile sizes and bytes in answers": {3: False, 4: False},  # checked first
    "EFT-25 secrets in logs": {3: False, 4: False},
}


def expected(finding: str, version: int) -> bool:
    return EXPECTED[finding][version]


def stored(server: ServerProcess, version: int, client_id_hex: str, name: str) -> Path:
    """Where our server keeps a verified file of ``version`` (v4 files live apart)."""
    if version == 4:
        return server.data_dir / "v4" / "files" / client_id_hex / name
    return server.stored(client_id_hex, name)


def v4_refusals(server: ServerProcess) -> list[str]:
    """Why our server closed version-4 connections without an answer, in order."""
    return [r["reason"] for r in server.logs() if r.get("event") == "connection_refused_v4"]


def fingerprint_of(server: ServerProcess) -> str:
    """The server's version-4 key fingerprint, from its ``listening`` log line."""
    return str(next(r for r in server.logs() if r.get("event") == "listening")["fingerprint"])


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def target(
    version: int, server_factory: Callable[..., ServerProcess]
) -> Callable[..., ServerProcess]:
    """A server speaking ``version``, started with extra flags."""

    def make(*args: str, name: str = "server") -> ServerProcess:
        return server_factory(*SERVER_ARGS[version], *args, name=name)

    return make


@pytest.fixture
def victims(version: int, client_factory: Callable[..., ClientDir]) -> Callable[..., ClientDir]:
    """Our real client, speaking ``version``: the victim of the attacks. One file at a
    time (``EFT_STREAM=0``): the attacks are written against that exchange (900s)."""

    def make(name: str, address: str) -> ClientDir:
        client = client_factory(name, address)
        client.protocol = version
        client.extra_env["EFT_STREAM"] = "0"
        return client

    return make


@dataclass
class AttackRun:
    returncode: int
    events: list[dict[str, Any]]
    output: str

    @property
    def result(self) -> dict[str, Any]:
        results = [e for e in self.events if e.get("event") == "result"]
        assert results, f"the attack printed no result:\n{self.output}"
        return results[-1]

    @property
    def succeeded(self) -> bool:
        """The attack's own verdict, checked against its exit status."""
        success = bool(self.result["success"])
        assert self.returncode == (0 if success else 1), self.output
        return success

    def steps(self) -> list[str]:
        return [e.get("message", "") for e in self.events if e.get("event") == "step"]


@dataclass
class AttackProcess:
    command: list[str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )

    @property
    def address(self) -> str:
        """Where a man-in-the-middle attack listens (waits until it does)."""
        return f"127.0.0.1:{wait_for_port(self.proc, self.log, self.command[3])}"

    def events(self) -> list[dict[str, Any]]:
        return _events(self.log.read_text(errors="replace"))

    def wait_for(self, event: str, timeout: float = 20) -> dict[str, Any]:
        """The first record of ``event`` the attack prints."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e.get("event") == event]
            if found:
                return found[0]
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} from the attack:\n{self.log.read_text()}")

    def finish(self, timeout: float = 60) -> AttackRun:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the attack did not finish:\n{self.log.read_text()}") from None
        text = self.log.read_text(errors="replace")
        return AttackRun(self.proc.returncode, _events(text), text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


class Attacks:
    """Starts ``eft-attack NAME --json --protocol VERSION ...`` (``record`` has no version)."""

    def __init__(self, tmp_path: Path, version: int = 3) -> None:
        self.tmp_path = tmp_path
        self.version = version
        self.started: list[AttackProcess] = []

    def start(self, name: str, *args: str | Path) -> AttackProcess:
        protocol = [] if name == "record" else ["--protocol", str(self.version)]
        command = [sys.executable, "-m", "eft_attacks", name, "--json", *protocol]
        command += map(str, args)
        log = self.tmp_path / f"attack-{name}-{len(self.started)}.log"
        process = AttackProcess(command, log)
        self.started.append(process)
        return process

    def run(self, name: str, *args: str | Path, timeout: float = 60) -> AttackRun:
        return self.start(name, *args).finish(timeout)


@pytest.fixture
def attacks(tmp_path: Path, version: int) -> Iterator[Attacks]:
    runner = Attacks(tmp_path, version)
    yield runner
    for process in runner.started:
        process.stop()


@dataclass
class Recorded:
    path: Path
    client: ClientDir
    run: ClientRun


@pytest.fixture
def record(
    attacks: Attacks, victims: Callable[..., ClientDir], tmp_path: Path
) -> Callable[..., Recorded]:
    """Run a real client through ``eft-attack record``: what an eavesdropper captures."""

    def make(server: ServerProcess, name: str, files: list[Path], *client_args: str) -> Recorded:
        path = tmp_path / f"recording-{name}-{len(attacks.started)}.jsonl"
        recorder = attacks.start("record", "--target", server.address, "--out", path)
        client = victims(name, recorder.address)
        run = client.run(files, *client_args)
        assert recorder.finish().succeeded
        return Recorded(path, client, run)

    return make


@dataclass
class Eavesdropped:
    """Two recorded sessions of one client: what a passive eavesdropper holds."""

    server: ServerProcess
    recording: Path
    client: ClientDir
    files: dict[str, bytes]


#: The files the eavesdropped client sends: a PIN, two letters from one template (one of
#: them twice), a report.
PIN = b"PIN: 480213\n"
LETTER = b"Dear customer,\nyour account number is "  # 38 bytes, so 2 full blocks shared


@pytest.fixture(scope="session")
def _eavesdropped_cache(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[int, Eavesdropped]]:
    cache: dict[int, Eavesdropped] = {}
    yield cache
    for entry in cache.values():
        entry.server.stop()


@pytest.fixture
def eavesdropped(
    version: int,
    _eavesdropped_cache: dict[int, Eavesdropped],
    tmp_path_factory: pytest.TempPathFactory,
) -> Eavesdropped:
    """Made once per version: a registration session (pin.txt, letter-a.txt, letter-b.txt,
    and letter-a-copy.txt, equal to letter-a.txt) and a reconnect session (report.txt),
    both recorded by ``eft-attack record``."""
    if version in _eavesdropped_cache:
        return _eavesdropped_cache[version]
    root = tmp_path_factory.mktemp(f"eavesdropped-v{version}")
    server = ServerProcess(root / "data", root / "server.log", args=SERVER_ARGS[version]).start()
    files = {
        "pin.txt": PIN,
        "letter-a.txt": LETTER + b"DE44 5001 0517 5407 3249 31.\nRegards\n",
        "letter-b.txt": LETTER + b"FR76 3000 6000 0112 3456 7890 189.\nRegards\n",
        "letter-a-copy.txt": LETTER + b"DE44 5001 0517 5407 3249 31.\nRegards\n",
        "report.txt": b"Q3 revenue: 1.2M EUR, do not forward\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    recording = root / "recording.jsonl"
    command = [sys.executable, "-m", "eft_attacks", "record", "--json", "--target",
               server.address, "--out", str(recording), "--connections", "2"]  # fmt: skip
    recorder = AttackProcess(command, root / "recorder.log")
    client = ClientDir(root / "client", "alice", recorder.address, protocol=version)
    client.extra_env["EFT_STREAM"] = "0"  # the exchange the analyses are written for
    first = client.run([root / name for name in files if name != "report.txt"])
    second = client.run([root / "report.txt"])
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "reconnected" in second.kinds()
    assert recorder.finish().succeeded
    entry = _eavesdropped_cache[version] = Eavesdropped(server, recording, client, files)
    return entry
