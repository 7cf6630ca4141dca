"""Record the small packet captures shipped in docs/captures (``make captures``).

``python -m eft_lab.captures [--out DIR] [SCENARIO ...]`` runs each scenario on the
loopback interface, as root (``tcpdump -i lo`` needs it): a server on 127.0.0.1:1256
(the port the Wireshark dissector, monitoring/wireshark/eft.lua, decodes by default),
our client as the victim, and the attack of ``eft-attack`` that the scenario shows. A man
in the middle listens on 127.0.0.2:1256, so both of its legs are on the dissector's port;
flood connections come from 127.0.0.3. Only TCP port 1256 is captured. The captures
differ from run to run (fresh keys, ports, times), not in what they show.
docs/WIRESHARK.md says what to look at in each one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .processes import clean_env, read_json_lines, wait_for_listening

PORT = 1256
SERVER = f"127.0.0.1:{PORT}"
ATTACKER = f"127.0.0.2:{PORT}"
FLOOD_SOURCE = "127.0.0.3"
DEFAULT_OUT = Path("docs") / "captures"  # run from the repository (make captures)
STEP_TIMEOUT = 60.0


class CaptureError(RuntimeError):
    pass


@dataclass
class Stage:
    """One scenario's working directory, its server and the processes it starts."""

    work: Path
    server_args: tuple[str, ...] = ()
    server: subprocess.Popen[bytes] | None = None
    fingerprint: str = ""
    attack_logs: dict[int, Path] = field(default_factory=dict)

    def start_server(self) -> None:
        log = self.work / "server.log"
        data = self.work / "server-data"
        data.mkdir()
        command = [sys.executable, "-m", "eft_server", "--host", "127.0.0.1", "--port", str(PORT)]
        command += ["--data-dir", str(data), "--log-format", "json", *self.server_args]
        with open(log, "wb") as out:
            self.server = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), cwd=self.work
            )
        listening = wait_for_listening(self.server, log, "eft-server")
        self.fingerprint = str(listening.get("fingerprint", ""))

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(15)

    def server_logged(self, event: str) -> None:
        """Waits until the server's log has ``event``."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            if any(r.get("event") == event for r in read_json_lines(self.work / "server.log")):
                return
            time.sleep(0.05)
        raise CaptureError(f"the server never logged {event!r}")

    def file(self, name: str, content: bytes) -> Path:
        path = self.work / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def client(
        self, name: str, files: list[Path], *args: str, server: str = SERVER, protocol: int = 3
    ) -> int:
        """Runs our client to the end; returns its exit status (attacks make it fail)."""
        config = self.work / f"client-{name}"
        config.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "eft_client", "--server", server, "--name", name]
        command += ["--config-dir", str(config), "--protocol", str(protocol), "--quiet"]
        command += [*args, *map(str, files)]
        with open(self.work / f"client-{name}.log", "ab") as out:
            done = subprocess.run(
                command,
                check=False,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                timeout=120,
            )
        return done.returncode

    def attack(self, name: str, *args: str, listen: bool = False) -> subprocess.Popen[bytes]:
        log = self.work / f"attack-{name}.log"
        command = [sys.executable, "-m", "eft_attacks", name, "--json", "--target", SERVER]
        command += [*(("--listen", ATTACKER) if listen else ()), *args]
        with open(log, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        self.attack_logs[proc.pid] = log
        if listen:
            wait_for_listening(proc, log, f"eft-attack {name}")
        return proc

    def finish(self, proc: subprocess.Popen[bytes], succeeds: bool) -> None:
        """Waits for the attack: the capture must show what the attack really did."""
        try:
            proc.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise CaptureError(f"{proc.args!r} did not finish") from None
        log = self.attack_logs[proc.pid]
        results = [r for r in read_json_lines(log) if r.get("event") == "result"]
        if not results or bool(results[-1].get("success")) is not succeeds:
            verdict = "succeeded" if succeeds else "failed"
            tail = log.read_text(errors="replace")[-3000:]
            raise CaptureError(f"{log.name}: the attack should have {verdict}:\n{tail}")


# Scenarios ------------------------------------------------------------------------------

HELLO = b"hello world\n"
REPORT = b"quarterly numbers: 12, 17, 23, 31\n" * 75  # 2550 bytes: 3 packets of 1 KiB


def normal_upload(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        hello = stage.file("hello.txt", HELLO)
        report = stage.file("report.txt", REPORT)
        # The first run registers, the second logs in again (v3: 827, v4: message 3 = 827).
        if stage.client("alice", [hello], protocol=protocol) != 0:
            raise CaptureError("the first upload failed")
        if stage.client("alice", [report], "--packet-size", "1024", protocol=protocol) != 0:
            raise CaptureError("the second upload failed")

    return run


def mitm_key(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        loot = stage.work / "loot"
        if protocol == 3:
            attack = stage.attack("mitm-key", "--out", str(loot), listen=True)
            secret = stage.file("salaries.csv", b"name,salary\nalice,98000\nbob,87000\n")
            stage.client("alice", [secret], server=ATTACKER)
        else:
            # A client that knows the server's key: it stops after the attacker's message 2.
            attack = stage.attack(
                "mitm-key", "--protocol", "4", "--connections", "1", "--out", str(loot), listen=True
            )
            secret = stage.file("salaries.csv", b"name,salary\nalice,98000\nbob,87000\n")
            stage.client(
                "alice",
                [secret],
                "--server-fingerprint",
                stage.fingerprint,
                "--retries",
                "0",
                server=ATTACKER,
                protocol=4,
            )
        stage.finish(attack, succeeds=protocol == 3)

    return run


#: 1.5 KB: the CRC-fixing flips need about 40 blocks of their own (bitflip.py).
ORDER = b"PAYMENT ORDER  \n" * 4 + b"PAY TO: alice   \n" + b"amount: 100 EUR, ref 42\n" * 60


def bitflip(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        attack = stage.attack(
            "bitflip",
            "--protocol",
            str(protocol),
            "--offset",
            "64",
            "--known",
            "PAY TO: alice   ",
            "--replace",
            "PAY TO: mallory ",
            "--positions",
            "40",
            listen=True,
        )
        order = stage.file("order.txt", ORDER)
        retries = ("--retries", "1") if protocol == 4 else ()
        stage.client("alice", [order], *retries, server=ATTACKER, protocol=protocol)
        stage.finish(attack, succeeds=protocol == 3)

    return run


def replay(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        attack = stage.attack(
            "replay", "--protocol", str(protocol), "--file", "contract.txt", "--nth", "1",
            listen=True,
        )  # fmt: skip
        old = stage.file("v1/contract.txt", b"price: 1000 EUR\n")
        new = stage.file("v2/contract.txt", b"price: 2500 EUR (renegotiated)\n")
        stage.client("alice", [old, new], server=ATTACKER, protocol=protocol)
        stage.finish(attack, succeeds=protocol == 3)

    return run


def hijack(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        attack = stage.attack("padding-oracle", "--protocol", str(protocol), listen=True)
        secret = stage.file("pin.txt", b"PIN 4921\n")
        stage.client("alice", [secret], server=ATTACKER, protocol=protocol)
        stage.finish(attack, succeeds=protocol == 3)

    return run


def record_flood(stage: Stage) -> None:
    attack = stage.attack(
        "slow", "--protocol", "4", "--records", "--identities", "2", "--per-identity", "1",
        "--trickle", "1", "--hold", "3",
    )  # fmt: skip
    stage.server_logged("registered")  # the flood's identities are in
    data = stage.file("data.bin", os.urandom(40_000))
    stage.client("alice", [data], "--retries", "0", "--timeout", "10", protocol=4)
    stage.finish(attack, succeeds=False)


def idle_flood(protocol: int) -> Callable[[Stage], None]:
    def run(stage: Stage) -> None:
        attack = stage.attack(
            "flood", "--protocol", str(protocol), "--connections", "6",
            "--source", FLOOD_SOURCE, "--hold", "1",
        )  # fmt: skip
        stage.server_logged("connection_shed")  # full, and shedding the silent ones
        report = stage.file("report.txt", b"quarterly numbers\n" * 20)
        stage.client("alice", [report], "--retries", "0", "--timeout", "10", protocol=protocol)
        stage.finish(attack, succeeds=False)

    return run


def _send(frames: list[bytes], read: bool = True) -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
        for frame in frames:
            sock.sendall(frame)
        if read:
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass


def malformed(stage: Stage) -> None:
    """Frames a correct peer never sends, each on its own connection."""
    zero_id = bytes(16)

    def request(version: int, code: int, size: int, payload: bytes = b"") -> bytes:
        return (
            zero_id
            + bytes([version])
            + code.to_bytes(2, "little")
            + size.to_bytes(4, "little")
            + payload
        )

    name = b"alice".ljust(255, b"\0")
    _send([request(3, 825, 10, b"x" * 10)])  # 825 needs exactly 255 bytes
    _send([request(3, 825, 255, b"A" * 255)])  # no NUL in the name's slot
    _send([request(3, 999, 4, b"junk")])  # unknown code
    _send([request(7, 825, 255, name)])  # unknown version
    _send([request(3, 825, 0xFFFFFFF0)])  # a size no server will read
    _send([request(4, 826, 0xFFFFFFFF)])  # v4 message 1 claiming 4 GiB


SCENARIOS: dict[str, tuple[str, Callable[[Stage], None], tuple[str, ...]]] = {
    "v3-upload": ("a normal version-3 registration and two uploads", normal_upload(3), ()),
    "v4-upload": ("a normal version-4 registration and two uploads", normal_upload(4), ()),
    "v3-steal-key": ("EFT-01: RSA key substitution by a man in the middle", mitm_key(3), ()),
    "v4-steal-key": ("EFT-01 on v4: the pinned client stops after message 2", mitm_key(4), ()),
    "v3-alter-crc": ("EFT-07: an altered file that keeps its CRC", bitflip(3), ()),
    "v4-alter-crc": ("EFT-07 on v4: the altered record is refused", bitflip(4), ()),
    "v3-replay": ("EFT-09: an old upload replayed on the left connection", replay(3), ()),
    "v4-replay": ("EFT-09 on v4: the replayed record fails its tag", replay(4), ()),
    "v3-hijack": ("EFT-06: padding oracle on the left-behind connection", hijack(3), ()),
    "v4-hijack": ("EFT-06 on v4: one altered record, closed", hijack(4), ()),
    "v4-record-flood": (
        "EFT-15: announced 1 MiB records that never come",
        record_flood,
        ("--record-buffers", "2", "--record-buffers-per-client", "1"),
    ),
    "v3-idle-flood": (
        "EFT-15: silent sockets shed at the connection cap",
        idle_flood(3),
        ("--max-connections", "4"),
    ),
    "v4-idle-flood": (
        "EFT-15 on v4: silent sockets shed at the connection cap",
        idle_flood(4),
        ("--max-connections", "4", "--legacy", "deny"),
    ),
    "malformed": ("frames no correct peer sends (the dissector's expert info)", malformed, ()),
}


#: Captures cut after their first frames: the padding oracle sends about 1,000 queries,
#: and the first hundred show how it works as well as all of them.
FIRST_FRAMES = {"v3-hijack": 400}
#: The docs ship these files: each stays small.
MAX_CAPTURE_BYTES = 200 * 1024


#: Floods whose capture keeps the victim's connections and only part of the flood: the
#: attacker reopens each shed socket at once, thousands of connections a second.
FLOODS = {"v3-idle-flood", "v4-idle-flood"}
FLOOD_FRAMES = 300  # the flood's first frames: it fills the cap, the shedding starts
FLOOD_WINDOW = 0.02  # and the flood's frames in the 20 ms after the victim's connect


def thin_flood(raw: Path) -> Path:
    def tshark(*args: str) -> str:
        done = subprocess.run(["tshark", "-r", str(raw), *args], check=True, capture_output=True)
        return done.stdout.decode()

    victim = f"ip.src == 127.0.0.1 and ip.dst == 127.0.0.1 and tcp.dstport == {PORT}"
    first = tshark(
        "-Y", f"{victim} and tcp.flags.syn == 1", "-T", "fields", "-e", "frame.time_relative"
    )
    if not first.split():
        raise CaptureError("the victim's connection is not in the capture")
    start = float(first.split()[0])
    window = (
        f"frame.time_relative >= {start:.6f} and frame.time_relative <= {start + FLOOD_WINDOW:.6f}"
    )
    keep = f"not ip.addr == {FLOOD_SOURCE} or frame.number <= {FLOOD_FRAMES} or ({window})"
    thinned = raw.with_name("thinned.pcap")
    subprocess.run(
        ["tshark", "-r", str(raw), "-Y", keep, "-F", "pcap", "-w", str(thinned)],
        check=True,
        capture_output=True,
    )
    return thinned


class Tcpdump:
    """``tcpdump -i lo`` on the scenario's port. Immediate mode: each packet is written
    as it comes, so none is lost when the capture stops (dumpcap, stopped, drops what the
    kernel still buffers)."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path = path
        command = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w", str(path)]
        command += ["tcp", "port", str(PORT)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STEP_TIMEOUT
        while "listening on" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise CaptureError(f"tcpdump did not start:\n{log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(STEP_TIMEOUT)


def record(name: str, out_dir: Path) -> Path:
    _, scenario, server_args = SCENARIOS[name]
    path = out_dir / f"{name}.pcapng"
    with tempfile.TemporaryDirectory(prefix=f"eft-capture-{name}-") as tmp:
        stage = Stage(Path(tmp), server_args)
        stage.start_server()
        raw = stage.work / "capture.pcap"
        try:
            capture = Tcpdump(raw, stage.work / "tcpdump.log")
            try:
                scenario(stage)
            finally:
                capture.stop()
        finally:
            stage.stop_server()
        # pcapng, the format Wireshark writes, with a comment saying what it shows.
        comment = f"eft capture {name}: {SCENARIOS[name][0]} (python -m eft_lab.captures)"
        if name in FLOODS:
            raw = thin_flood(raw)
        command = ["editcap", "-F", "pcapng", "--capture-comment", comment, str(raw), str(path)]
        if name in FIRST_FRAMES:  # -r: keep, not drop, the frames in the range
            command[1:1] = ["-r"]
            command.append(f"1-{FIRST_FRAMES[name]}")
        subprocess.run(command, check=True, capture_output=True)
    path.chmod(0o644)
    if path.stat().st_size > MAX_CAPTURE_BYTES:
        raise CaptureError(f"{path} is larger than {MAX_CAPTURE_BYTES} bytes")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eft_lab.captures", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default docs/captures")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, _, _) in SCENARIOS.items():
            print(f"{name:<16} {what}")
        return 0
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; see --list")
    if os.geteuid() != 0:
        print("captures: run as root: tcpdump captures on the loopback interface", file=sys.stderr)
        return 2
    for tool, package in (("tcpdump", "tcpdump"), ("editcap", "tshark")):
        if shutil.which(tool) is None:
            print(
                f"captures: {tool} is missing (Debian: apt-get install {package})", file=sys.stderr
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios or list(SCENARIOS):
        started = time.monotonic()
        try:
            path = record(name, args.out)
        except (CaptureError, RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"captures: {name}: {exc}", file=sys.stderr)
            return 1
        size = path.stat().st_size
        print(f"{path}  {size / 1024:.0f} KiB  {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
