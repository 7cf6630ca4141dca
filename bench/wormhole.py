"""magic-wormhole on this machine alone: its mailbox server and transit relay on 127.0.0.1.

``twist wormhole-mailbox`` and ``twist transitrelay`` (the PyPI packages
magic-wormhole-mailbox-server and magic-wormhole-transit-relay) listen on ports the
kernel picks (read from their logs), and are stopped by their PIDs. A transfer is
``wormhole send --code C FILE`` and ``wormhole receive --accept-file -o DEST C`` started
together, both pointed at them with ``--relay-url`` and ``--transit-helper``: nothing
leaves the machine.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import Finished, bench_env, stop_pid

MODULES = ("wormhole", "wormhole_mailbox_server", "wormhole_transit_relay")


def _tool(name: str) -> str | None:
    """The console script next to this interpreter first (the venv), then on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def available() -> str | None:
    """None when the client, the mailbox server and the relay are installed, else what
    is missing."""
    missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
    missing += [t for t in ("wormhole", "twist") if _tool(t) is None]
    if missing:
        return (
            f"{', '.join(missing)} (pip install magic-wormhole magic-wormhole-mailbox-server "
            "magic-wormhole-transit-relay, the bench extra)"
        )
    return None


#: twisted's line once a plugin listens: "PrivacyEnhancedSite starting on 35529" (the
#: mailbox), "ServerFactory starting on 39971" (the relay).
_STARTED_ON = re.compile(r"\w+ starting on (\d+)")


@dataclass
class LocalWormhole:
    home: Path
    mailbox_port: int = 0
    relay_port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Attempts stopped for not ending in time (``send``); the report says how many.
    stuck: int = 0
    _codes: int = 0

    def start(self) -> LocalWormhole:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.mailbox_port = self._serve(
                "mailbox", ["wormhole-mailbox", f"--channel-db={self.home / 'relay.sqlite'}"]
            )
            self.relay_port = self._serve("relay", ["transitrelay"])
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, name: str, plugin: list[str]) -> int:
        """Start one twist plugin on a port the kernel picks, and read which from its log
        (``... starting on PORT``). A port merely seen free a moment before could be taken
        by any other process meanwhile, and a probe of it would then find that process:
        the clients would talk to a stranger and wait forever."""
        twist = _tool("twist")
        assert twist is not None
        log_path = self.home / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [twist, plugin[0], "--port=tcp:0:interface=127.0.0.1", *plugin[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env=bench_env(),
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            found = _STARTED_ON.search(log_path.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            time.sleep(0.1)  # twist says nothing else when it is listening
        stop_pid(proc)
        raise RuntimeError(f"wormhole {name} did not start: {log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        for proc in self.procs:
            stop_pid(proc)

    def _options(self) -> list[str]:
        return [
            "--relay-url",
            f"ws://127.0.0.1:{self.mailbox_port}/v1",
            "--transit-helper",
            f"tcp:127.0.0.1:{self.relay_port}",
        ]

    def send(self, source: Path, dest: Path, timeout: float | None = None) -> Finished:
        """One transfer: wall seconds from the sender's start until both have exited
        (the receiver exits once the file is written). An attempt that has not ended
        within ``timeout`` (by default a minute plus 2 MB/s of the file) is stopped,
        what both said is printed, and one more attempt is made with a new code: a
        handful of runs under heavy load never ended (the smoke test then hit its
        own limit), and a comparison tool's stall must not stall the bench. The cause,
        seen in a stopped attempt's output: wormhole's transit picks a port that was
        free, listens on it, and when another process took it meanwhile ("Couldn't
        listen on any:38305: Address already in use") prints ERROR and waits forever.
        Raises if both attempts fail."""
        if timeout is None:
            timeout = 60 + source.stat().st_size / 2e6
        for attempt in (1, 2):
            try:
                return self._attempt(source, dest, timeout)
            except subprocess.TimeoutExpired as stuck:
                self.stuck += 1
                print(
                    f"magic-wormhole: attempt {attempt} had not ended after {timeout:.0f} s; "
                    f"what it said: {stuck.output!r}",
                    file=sys.stderr,
                    flush=True,
                )
                dest.unlink(missing_ok=True)
        raise RuntimeError(f"magic-wormhole did not finish in 2 attempts of {timeout:.0f} s")

    def _attempt(self, source: Path, dest: Path, timeout: float) -> Finished:
        wormhole = _tool("wormhole")
        assert wormhole is not None
        self._codes += 1
        code = f"{self._codes}-eft-bench"  # a fresh nameplate per transfer
        env = bench_env()
        launched = time.time()
        started = time.perf_counter()
        sender = subprocess.Popen(
            [
                *[wormhole, *self._options(), "send", "--hide-progress", "--no-qr"],
                *["--code", code, str(source)],
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        receiver = subprocess.Popen(
            [
                # --no-listen: the receiver connects to the sender's listener, still
                # directly; a listener of its own is a second chance of the race above.
                *[wormhole, *self._options(), "receive", "--hide-progress", "--accept-file"],
                "--no-listen",
                *["-o", str(dest), code],
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = started + timeout
        try:
            received, _ = receiver.communicate(timeout=timeout)
            sent, _ = sender.communicate(timeout=max(0.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            stop_pid(receiver)
            stop_pid(sender)
            # Both stopped: what each had said so far, for the reader of the bench's log.
            said = b"".join(proc.communicate()[0] or b"" for proc in (sender, receiver))
            raise subprocess.TimeoutExpired(
                "wormhole", timeout, output=said.decode(errors="replace")[-2000:]
            ) from None
        finally:
            stop_pid(receiver)
            stop_pid(sender)
        seconds = time.perf_counter() - started
        said = sent.decode(errors="replace") + received.decode(errors="replace")
        if sender.returncode or receiver.returncode:
            raise RuntimeError(f"wormhole failed: {said[-2000:]}")
        return Finished(seconds, launched, time.time(), said)
