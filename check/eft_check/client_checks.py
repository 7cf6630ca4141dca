"""``eft-check client -- COMMAND``: the client under test against each scenario.

For every scenario the command runs in a fresh directory holding ``transfer.info``
(``127.0.0.1:PORT`` of a scripted server bound to port 0, a user name, the file to send)
and the file. Placeholders in the command ({server}, {host}, {port}, {name}, {file},
{dir}) are filled in for clients that take flags instead. Afterwards the requests the
server saw, what it noticed in their bytes, the exit status and the files left on disk
(``me.info``, ``priv.key``) are judged against the spec.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol import crypto, wire

from .report import Finding, Report, Result, Status, deviation, fail, trim
from .rules import CLIENT_CHECKS
from .scripted_server import Script, ScriptedServer

#: Mistakes after which the scripted server hung up: what follows says nothing more.
SESSION_ENDING = {"waits-for-828-answer", "payload-size-mismatch"}
USER_NAME = "eftcheck"
FILE_NAME = "upload.bin"


@dataclass(frozen=True)
class Scenario:
    id: str
    expected: tuple[str, ...]  # request codes, a run of 828s written "828…"
    script: Script = field(default_factory=Script)
    file_size: int = 3000
    succeeds: bool = True
    #: Attempts at the file: 828 runs next to each other (after a 1607) are told apart
    #: by their packet numbers.
    attempts: int = 1
    #: "registered": an earlier run registers first; "forgotten": ... and the server
    #: then forgets it, as after a restart.
    before: str | None = None


UPLOAD = ("828…", "900")
FRESH = ("825", "826", *UPLOAD)
RETRY = ("828…", "901")


def scenarios(slow: float) -> list[Scenario]:
    return [
        Scenario("register", FRESH),
        Scenario("reconnect", ("827", *UPLOAD), before="registered"),
        Scenario("error-1607-once", ("825", *FRESH), Script(errors_1607={825: 1})),
        Scenario("error-1607-four", ("825",) * 4, Script(errors_1607={825: 4}), succeeds=False),
        Scenario("file-1607-once", FRESH, Script(errors_1607={828: 1}), attempts=2),
        Scenario(
            "crc-wrong-once", ("825", "826", *RETRY, *UPLOAD), Script(wrong_crc=1), attempts=2
        ),
        Scenario(
            "crc-wrong-four",
            ("825", "826", *RETRY * 3, "828…", "902"),
            Script(wrong_crc=-1),
            succeeds=False,
            attempts=4,
        ),
        Scenario("reconnect-denied", ("827", *FRESH), before="forgotten"),
        Scenario("name-taken", ("825",), Script(refuse_name=True), succeeds=False),
        Scenario("split-answers", FRESH, Script(split_answers=True)),
        Scenario(
            "coalesced-answers",
            ("825", "826", *RETRY, *UPLOAD),
            Script(wrong_crc=1, coalesce_901=True),
            attempts=2,
        ),
        Scenario("slow-server", FRESH, Script(delay=slow)),
        Scenario("empty-file", FRESH, file_size=0),
        Scenario("multi-packet", FRESH, file_size=600 * 1024),
    ]


def collapse(codes: list[int]) -> tuple[str, ...]:
    """825 826 828 828 828 900 -> ("825", "826", "828…", "900")."""
    out: list[str] = []
    for code, run in itertools.groupby(codes):
        count = len(list(run))
        out.extend(["828…"] if code == 828 else [str(code)] * count)
    return tuple(out)


@dataclass
class Run:
    returncode: int | None  # None: killed after the time limit
    output: str


class ClientChecker:
    def __init__(
        self, command: list[str], timeout: float = 5.0, patience: float = 3.0, slow: float = 1.5
    ) -> None:
        self.command = [absolute_if_a_path(part) for part in command]
        self.timeout = timeout
        self.patience = patience
        self.slow = slow
        #: The whole run of one client; it may do RSA and slow I/O, so be generous.
        self.run_limit = max(60.0, 12 * timeout)
        self.rng = random.Random(26)

    def run(self, only: set[str] | None = None) -> Report:
        report = Report("client " + " ".join(self.command))
        for scenario in scenarios(self.slow):
            if only and scenario.id not in only:
                continue
            result = Result(CLIENT_CHECKS[scenario.id])
            with tempfile.TemporaryDirectory(prefix="eft-check-") as tmp:
                self.play(scenario, Path(tmp), result)
            report.results.append(result)
        return report

    def launch(self, directory: Path, server: ScriptedServer) -> Run:
        values = {
            "server": f"127.0.0.1:{server.port}",
            "host": "127.0.0.1",
            "port": str(server.port),
            "name": USER_NAME,
            "file": str(directory / FILE_NAME),
            "dir": str(directory),
        }
        command = [part.format(**values) if "{" in part else part for part in self.command]
        # EFT_* variables would steer our own clients away from transfer.info.
        env = {key: value for key, value in os.environ.items() if not key.startswith("EFT_")}
        try:
            done = subprocess.run(
                command,
                cwd=directory,
                env=env,
                capture_output=True,
                timeout=self.run_limit,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"") + (exc.stderr or b"")
            return Run(None, output.decode(errors="replace"))
        except OSError as exc:
            return Run(127, f"cannot run {command[0]}: {exc}")
        return Run(done.returncode, (done.stdout + done.stderr).decode(errors="replace"))

    def play(self, scenario: Scenario, directory: Path, result: Result) -> None:
        data = self.rng.randbytes(scenario.file_size)
        (directory / FILE_NAME).write_bytes(data)
        with ScriptedServer(Script(), self.patience, self.run_limit) as server:
            server.expected_file = data
            (directory / "transfer.info").write_text(
                f"127.0.0.1:{server.port}\n{USER_NAME}\n{FILE_NAME}\n"
            )
            if scenario.before:
                first = self.launch(directory, server)
                if first.returncode != 0:
                    # What broke the first run is named by what the server noticed;
                    # a client that registered can still be checked on reconnecting.
                    for finding in _unique(server.findings):
                        result.add(finding)
                if not (directory / "me.info").exists():
                    if not result.mistakes:
                        result.add(fail("a first, plain run that registers", _exit(first)))
                    result.frames = trim(server.frames)
                    return
                if scenario.before == "forgotten":
                    server.forget()
                server.reset_log()
            server.script = scenario.script
            run = self.launch(directory, server)
        result.frames = trim(server.frames)
        for finding in _unique(server.findings):
            result.add(finding)
        if result.mistakes and SESSION_ENDING & set(result.mistakes):
            return
        self.judge_sequence(scenario, server, run, result)
        if scenario.id in ("register", "reconnect-denied") and run.returncode == 0:
            self.judge_disk(directory, server, result)
        if scenario.id == "reconnect":
            self.judge_reconnect(directory, server, result)
        if scenario.id == "empty-file":
            judge_empty(server, result)

    def judge_sequence(
        self, scenario: Scenario, server: ScriptedServer, run: Run, result: Result
    ) -> None:
        codes = collapse(server.codes())
        ok_exit = run.returncode == 0 if scenario.succeeds else run.returncode not in (0, None)
        uploads = "828…" in scenario.expected
        attempts = len(server.attempts) if uploads else scenario.attempts
        if codes == scenario.expected and ok_exit and attempts == scenario.attempts:
            return
        got = f"requests {' '.join(codes) or 'none'}; {_exit(run)}"
        expected = f"requests {' '.join(scenario.expected)}; " + (
            "exit 0" if scenario.succeeds else "stop with an error (exit status not 0)"
        )
        if uploads:
            got += f"; attempts at the file: {len(server.attempts)}"
            expected += f"; attempts at the file: {scenario.attempts}"
        mistake: str | None = None
        status = Status.FAIL
        if scenario.id.startswith("error-1607"):
            tries = codes.count("825")
            if tries == 1:
                mistake = "no-retry-after-1607"
            elif tries > 4:
                mistake = "too-many-retries"
        elif scenario.id == "file-1607-once" and len(server.attempts) < 2 <= len(codes):
            mistake = "no-retry-after-1607"
        elif scenario.id == "empty-file" and "828…" not in codes:
            mistake = "no-packet-for-empty-file"
        elif scenario.id == "split-answers":
            mistake, status = "one-recv", Status.DEVIATION
        result.add(Finding(status, expected, got, mistake))

    def judge_disk(self, directory: Path, server: ScriptedServer, result: Result) -> None:
        """me.info: name, id hex, the private key (Base64); priv.key: the same key."""
        key_requests = [r for r in server.requests if r.code == 826]
        if not key_requests:
            return
        sent = key_requests[-1]
        me_info = directory / "me.info"
        if not me_info.exists():
            result.add(fail("me.info written after 1600 (§6)", "no me.info"))
            return
        lines = [line.rstrip("\0 \t\r") for line in me_info.read_text(errors="replace").split("\n")]
        if len(lines) < 3 or lines[0] != USER_NAME:
            result.add(fail(f"me.info line 1 {USER_NAME!r}", f"{lines[:1]}"))
            return
        if lines[1].lower() != sent.client_id.hex():
            result.add(fail(f"me.info line 2 {sent.client_id.hex()}", repr(lines[1])))
        key_text = "".join(lines[2:])
        try:
            key = crypto.import_private_key(key_text)
        except ValueError as exc:
            result.add(fail("me.info lines 3…: the Base64 private key", str(exc)))
            return
        if crypto.public_key_der(key) != sent.payload[255:]:
            result.add(fail("me.info's key is the one whose public half went in 826", "another"))
        priv = directory / "priv.key"
        if not priv.exists():
            result.add(deviation("priv.key holding the same key (§6)", "no priv.key"))
            return
        try:
            same = crypto.import_private_key(priv.read_text(errors="replace")).n == key.n
        except ValueError as exc:
            result.add(fail("priv.key: the Base64 private key", str(exc)))
            return
        if not same:
            result.add(fail("priv.key holding me.info's key", "a different key"))

    def judge_reconnect(self, directory: Path, server: ScriptedServer, result: Result) -> None:
        reconnects = [r for r in server.requests if r.code == 827]
        if not reconnects:
            return
        lines = (directory / "me.info").read_text(errors="replace").splitlines()
        saved = lines[1].strip().lower() if len(lines) > 1 else ""
        request = reconnects[0]
        if request.client_id.hex() != saved:
            result.add(fail(f"827 carrying the id of me.info ({saved})", request.client_id.hex()))
        try:
            name = wire.decode_string(request.payload)
        except Exception as exc:
            result.add(fail("827 carrying the user name", str(exc)))
            return
        if name != USER_NAME:
            result.add(fail(f"827 carrying {USER_NAME!r}", repr(name)))


def absolute_if_a_path(part: str) -> str:
    """The command runs in the scenario's directory: an argument naming an existing file
    or directory here (``./client``, ``client.jar``) is made absolute first."""
    if "{" in part or part.startswith("-") or os.path.isabs(part):
        return part
    return os.path.abspath(part) if os.path.exists(part) else part


def judge_empty(server: ScriptedServer, result: Result) -> None:
    if len(server.attempts) != 1:
        return
    packets = server.attempts[0].packets
    shape = [(p.orig_size, len(p.content)) for p in packets]  # content_size: judged
    if shape != [(0, 16)]:
        result.add(
            fail(
                "one 828: orig_file_size 0, 16 bytes of padding",
                f"(orig_file_size, bytes) per packet: {shape}",
            )
        )


def _exit(run: Run) -> str:
    if run.returncode is None:
        return "still running at the time limit (killed)"
    tail = run.output.strip().splitlines()[-1:] or ["no output"]
    return f"exit {run.returncode} ({tail[0][:120]})"


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str | None, str]] = set()
    out = []
    for finding in findings:
        key = (str(finding.status), finding.mistake, finding.expected)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
