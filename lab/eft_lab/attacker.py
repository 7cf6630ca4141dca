"""The lab's attacker (``eft-lab --attack``): the toolkit's attacks against the lab's server.

For each scenario it picks, on version 3 and then on version 4, it starts the attack as
the toolkit's own program (``eft-attack``: a man-in-the-middle proxy, or an off-path
flood) and points victim clients (our real ``eft-client``, a share of the lab's clients)
at the proxy, or at the server while the flood runs. Nothing here attacks anything
itself: what each scenario achieved is read from the attack's verdict, the files the
attacker saved and the victims' own results, and counted in Prometheus metrics labelled
by scenario and version, served on ``--metrics-port`` until the process is stopped.

Each outcome is written to ``<workdir>/outcomes.jsonl`` (one JSON line per scenario and
version) with the paths that prove it, so the lab can check them on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from eft_protocol import __version__

from .processes import clean_env, read_json_lines, wait_for_port

#: scenario -> (finding of docs/SECURITY.md, what it tries)
SCENARIOS: dict[str, tuple[str, str]] = {
    "steal-key": ("EFT-01", "substitute the server's key and read the files in transit"),
    "alter-crc": ("EFT-07", "alter a file in transit so that its CRC still matches"),
    "replay": ("EFT-09", "replay an old upload over a newer one on the left connection"),
    "hijack": ("EFT-06", "use the victim's left connection to decrypt its file"),
    "record-flood": ("EFT-15", "hold the server's record buffers with announced records"),
    "idle-flood": ("EFT-15", "fill the server's connections with idle sockets"),
}
VERSIONS = (3, 4)
#: What the lab's server needs for a scenario to be the one the findings describe.
SERVER_ARGS: dict[str, tuple[str, ...]] = {
    "record-flood": ("--record-buffers", "3", "--record-buffers-per-client", "1"),
    "idle-flood": ("--max-connections", "24"),
}
#: Where the idle flood comes from, so the server can tell it from the lab's clients.
FLOOD_SOURCE = "127.0.0.3"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SECRET = b"name,salary\nalice,98000\nbob,87000\n" * 20
ORDER = b"PAYMENT ORDER  \n" * 64 + b"PAY TO: alice   \n" + b"amount: 100 EUR, ref 42\n" * 100
MEETING = b"Meet me at the old mill at 23:15.\n"  # 3 blocks: the oracle's work is small
CONTRACT_OLD, CONTRACT_NEW = b"price: 1000 EUR\n", b"price: 2500 EUR (renegotiated)\n"


class AttackMetrics:
    """What the attacker achieved and what the defenders saw, per scenario and version.
    Every series exists at 0 from the start, so dashboard queries return data."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        labels = ["scenario", "version"]
        self.files_read = Counter(
            "eft_attack_files_read", "Victims' files the attacker read.", labels, registry=r
        )
        self.files_altered = Counter(
            "eft_attack_files_altered",
            "Files stored altered (or rolled back) with their check accepted.",
            labels,
            registry=r,
        )
        self.sessions_hijacked = Counter(
            "eft_attack_sessions_hijacked",
            "Victims' left connections the attacker used.",
            labels,
            registry=r,
        )
        self.attempts_refused = Counter(
            "eft_attack_attempts_refused",
            "Attacks the defenders refused (the attack's own verdict: failed).",
            labels,
            registry=r,
        )
        self.legit_failures = Counter(
            "eft_attack_legit_failures",
            "Legitimate clients' uploads that failed during a scenario.",
            labels,
            registry=r,
        )
        self.legit_seconds = Histogram(
            "eft_attack_legit_upload_seconds",
            "Legitimate uploads' duration during a scenario (under flood for the floods).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for scenario in SCENARIOS:
            for version in VERSIONS:
                for metric in (
                    self.files_read,
                    self.files_altered,
                    self.sessions_hijacked,
                    self.attempts_refused,
                    self.legit_failures,
                    self.legit_seconds,
                ):
                    metric.labels(scenario, str(version))


@dataclass
class Outcome:
    scenario: str
    version: int
    attempted: bool = True
    #: The attack's own verdict (its exit status 0).
    achieved: bool = False
    summary: str = ""
    files_read: int = 0
    files_altered: int = 0
    sessions_hijacked: int = 0
    legit_uploads: int = 0
    legit_failures: int = 0
    legit_seconds: list[float] = field(default_factory=list)
    #: Paths and names that prove it: victim files, the attacker's copies, client ids.
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Victim:
    """Our real client, as one of the lab's clients that connects through the attacker."""

    workdir: Path
    name: str
    protocol: int
    #: Version 4: the server's key the victim is configured with (None: trust on first use).
    fingerprint: str | None

    def run(self, server: str, files: Sequence[Path], *extra: str) -> tuple[int, float, str]:
        """(exit status, seconds, output) of one ``eft-client`` run."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        pin = (
            ("--server-fingerprint", self.fingerprint)
            if self.protocol == 4 and self.fingerprint
            else ()
        )
        command = [
            sys.executable, "-m", "eft_client",
            "--server", server, "--name", self.name, "--config-dir", str(self.workdir),
            "--json", "--protocol", str(self.protocol), "--timeout", "20", *pin, *extra,
            *(str(f) for f in files),
        ]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(
            command,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            timeout=180,
            check=False,
        )
        seconds = time.monotonic() - started
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        (self.workdir / "client.log").open("a").write(output)
        return done.returncode, seconds, output

    @property
    def client_id_hex(self) -> str | None:
        me_info = self.workdir / ("me.info" if self.protocol == 3 else "me4.info")
        return me_info.read_text().splitlines()[1].strip() if me_info.exists() else None


class AttackProcess:
    """One run of ``eft-attack NAME --json ...``, its output in a file."""

    def __init__(self, log: Path, name: str, *args: str) -> None:
        self.log, self.name = log, name
        command = [sys.executable, "-m", "eft_attacks", name, "--json", *args]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{wait_for_port(self.proc, self.log, f'eft-attack {self.name}')}"

    def wait_for(self, event: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r.get("event") == event for r in read_json_lines(self.log)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = 90) -> dict[str, Any]:
        """The attack's ``result`` record (``success`` False if it gave none)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        results = [r for r in read_json_lines(self.log) if r.get("event") == "result"]
        if not results:
            return {"success": False, "message": f"no verdict (exit {self.proc.returncode})"}
        return results[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Attacker:
    def __init__(self, args: argparse.Namespace, metrics: AttackMetrics) -> None:
        self.target = args.target
        self.workdir: Path = args.workdir
        self.fingerprint: str = args.server_fingerprint or self.learn_fingerprint()
        self.flood_source: str | None = args.flood_source
        self.metrics = metrics

    def learn_fingerprint(self) -> str:
        """The server's version-4 key, as a client learns it at a clean first contact
        (trust on first use): the victims are then configured with it, as users are."""
        first = Victim(self.workdir / "first-contact", "victim-first-contact", 4, None)
        hello = _write(first.workdir.parent / "first-contact-files" / "hello.txt", b"hello\n")
        code, _seconds, output = first.run(self.target, [hello])
        pins = first.workdir / "known_servers"
        if code != 0 or not pins.exists():
            raise SystemExit(f"cannot reach the server for its key (exit {code}):\n{output}")
        return pins.read_text().split()[1]

    def run(self, scenarios: Sequence[str]) -> list[Outcome]:
        outcomes = []
        runners: dict[str, Callable[[Outcome, Path, Victim], None]] = {
            "steal-key": self.steal_key,
            "alter-crc": self.alter_crc,
            "replay": self.replay,
            "hijack": self.hijack,
            "record-flood": self.record_flood,
            "idle-flood": self.idle_flood,
        }
        for scenario in scenarios:
            for version in VERSIONS:
                outcome = Outcome(scenario, version)
                place = self.workdir / f"{scenario}-v{version}"
                place.mkdir(parents=True, exist_ok=True)
                victim = Victim(place / "victim", f"victim-{scenario}-v{version}", version,
                                self.fingerprint)  # fmt: skip
                print(json.dumps({"event": "scenario", "scenario": scenario, "version": version}),
                      flush=True)  # fmt: skip
                runners[scenario](outcome, place, victim)
                self._count(outcome)
                with open(self.workdir / "outcomes.jsonl", "a") as out:
                    out.write(json.dumps(asdict(outcome)) + "\n")
                said = {k: asdict(outcome)[k] for k in ("achieved", "attempted", "summary")}
                print(json.dumps({"event": "outcome", "scenario": scenario,
                                  "version": version, **said}), flush=True)  # fmt: skip
                outcomes.append(outcome)
        return outcomes

    def _count(self, o: Outcome) -> None:
        labels = (o.scenario, str(o.version))
        m = self.metrics
        m.files_read.labels(*labels).inc(o.files_read)
        m.files_altered.labels(*labels).inc(o.files_altered)
        m.sessions_hijacked.labels(*labels).inc(o.sessions_hijacked)
        m.legit_failures.labels(*labels).inc(o.legit_failures)
        if o.attempted and not o.achieved:
            m.attempts_refused.labels(*labels).inc()
        for seconds in o.legit_seconds:
            m.legit_seconds.labels(*labels).observe(seconds)

    def _attack(self, place: Path, name: str, version: int, *args: str) -> AttackProcess:
        v4 = ("--protocol", "4") if version == 4 else ()
        return AttackProcess(place / "attack.log", name, "--target", self.target, *v4, *args)

    def _victim_run(
        self, outcome: Outcome, victim: Victim, server: str, files: Sequence[Path], *extra: str
    ) -> int:
        code, seconds, _output = victim.run(server, files, *extra)
        outcome.evidence.update(victim_exit=code, victim_client_id=victim.client_id_hex)
        outcome.legit_uploads += 1
        outcome.legit_seconds.append(seconds)
        return code

    # -- the scenarios ---------------------------------------------------------------

    def steal_key(self, o: Outcome, place: Path, victim: Victim) -> None:
        secret = _write(place / "files" / "salaries.csv", SECRET)
        loot = place / "loot"
        extra = ("--connections", "1") if o.version == 4 else ()
        attack = self._attack(place, "mitm-key", o.version, "--out", str(loot), *extra)
        code = victim.run(attack.address, [secret], "--retries", "0")[0]
        result = attack.finish()
        o.achieved = bool(result["success"])
        o.files_read = _copies(loot, [secret])
        o.evidence.update(victim_exit=code, victim_file=str(secret), loot=str(loot),
                          victim_client_id=victim.client_id_hex)  # fmt: skip
        o.summary = (
            f"read {o.files_read} file(s) in transit; the victim verified it (exit {code})"
            if o.achieved
            else f"the victim refused the attacker's key (exit {code}): nothing read"
        )

    def alter_crc(self, o: Outcome, place: Path, victim: Victim) -> None:
        order = _write(place / "files" / "order.txt", ORDER)
        attack = self._attack(
            place, "bitflip", o.version,
            "--offset", "1024", "--known", "PAY TO: alice   ", "--replace", "PAY TO: mallory ",
        )  # fmt: skip
        retries = ("--retries", "1") if o.version == 4 else ("--retries", "0")
        code = victim.run(attack.address, [order], *retries)[0]
        result = attack.finish()
        # Achieved means stored altered without anyone noticing: the toolkit's "success"
        # only says the bits were flipped in transit, which a v4 victim then refuses.
        o.achieved = bool(result["success"]) and code == 0
        o.files_altered = 1 if o.achieved else 0
        o.evidence.update(victim_exit=code, victim_file=str(order), stored_name="order.txt",
                          victim_client_id=victim.client_id_hex)  # fmt: skip
        if o.files_altered:
            o.summary = (
                "the server stored the altered order, its CRC accepted; the victim saw success"
            )
        elif code == 0:  # a 904 (PACK) has no 1603 to flip: the retry went through intact
            o.summary = (
                "the altered record was refused (closed without an answer); the victim sent "
                "the order again and it was stored as sent, nothing altered stored"
            )
        else:
            o.summary = (
                f"the altered record was refused; the victim stopped (exit {code}), "
                "nothing altered stored"
            )

    def replay(self, o: Outcome, place: Path, victim: Victim) -> None:
        old = _write(place / "files" / "v1" / "contract.txt", CONTRACT_OLD)
        new = _write(place / "files" / "v2" / "contract.txt", CONTRACT_NEW)
        attack = self._attack(place, "replay", o.version, "--file", "contract.txt", "--nth", "1")
        code = self._victim_run(o, victim, attack.address, [old, new], "--retries", "0")
        result = attack.finish()
        o.achieved = bool(result["success"])
        o.sessions_hijacked = o.files_altered = 1 if o.achieved else 0
        o.legit_failures = 1 if code != 0 else 0
        o.evidence.update(old_file=str(old), new_file=str(new), stored_name="contract.txt")
        o.summary = (
            "replayed the old upload on the left connection: the server rolled the file back"
            if o.achieved
            else "the replayed records failed their tag: the newer file stays"
        )

    def hijack(self, o: Outcome, place: Path, victim: Victim) -> None:
        meeting = _write(place / "files" / "meeting.txt", MEETING)
        loot = place / "loot"
        loot.mkdir(parents=True, exist_ok=True)  # the oracle writes a file, not a directory
        attack = self._attack(
            place, "padding-oracle", o.version, "--out", str(loot / "meeting.txt")
        )
        code = self._victim_run(o, victim, attack.address, [meeting], "--retries", "0")
        result = attack.finish()
        o.achieved = bool(result["success"])
        o.sessions_hijacked = 1 if o.achieved else 0
        o.files_read = _copies(loot, [meeting])
        o.legit_failures = 1 if code != 0 else 0
        o.evidence.update(victim_file=str(meeting), loot=str(loot), stored_name="meeting.txt")
        o.summary = (
            f"kept the victim's left connection and decrypted its file ({o.files_read} read)"
            if o.achieved
            else "the left connection closed at the first forged record: nothing learnt"
        )

    def record_flood(self, o: Outcome, place: Path, victim: Victim) -> None:
        if o.version == 3:
            o.attempted = False
            o.summary = "not applicable: version 3 has no records (its slow peers: EFT-15)"
            return
        data = _write(place / "files" / "data.bin", os.urandom(2 << 20))
        self._idle_baseline(o, victim, data)
        flood = self._attack(
            place, "slow", o.version, "--records", "--identities", "3", "--per-identity", "4",
            "--trickle", "1", "--hold", "600",
        )  # fmt: skip
        try:
            if not flood.wait_for("holding"):
                o.summary = "the flood could not start"
                return
            self._legit_uploads(o, victim, data)
        finally:
            flood.stop()
        o.achieved = o.legit_failures > 0
        o.evidence.update(victim_file=str(data), stored_name="data.bin")
        o.summary = (
            f"{o.legit_failures} of {o.legit_uploads} legitimate uploads failed under the flood"
            if o.achieved
            else f"{o.legit_uploads} legitimate uploads went through the flood, "
            f"median {_median(o.legit_seconds):.2f} s (idle {o.evidence['idle_seconds']:.2f} s)"
        )

    def idle_flood(self, o: Outcome, place: Path, victim: Victim) -> None:
        data = _write(place / "files" / "report.bin", os.urandom(256 << 10))
        self._idle_baseline(o, victim, data)
        source = ("--source", self.flood_source) if self.flood_source else ()
        flood = self._attack(place, "flood", o.version, "--connections", "32", "--hold", "6",
                             *source)  # fmt: skip
        # The flood's connections open within its first half second; no event says so.
        time.sleep(1.0)
        self._legit_uploads(o, victim, data)
        result = flood.finish()
        o.achieved = bool(result["success"]) or o.legit_failures > 0
        o.evidence.update(victim_file=str(data), stored_name="report.bin",
                          probes=result.get("probes"), refused=result.get("refused"))  # fmt: skip
        o.summary = (
            f"locked legitimate clients out ({result.get('refused')} probe(s) refused, "
            f"{o.legit_failures} upload(s) failed)"
            if o.achieved
            else f"the server shed the idle sockets: {o.legit_uploads} uploads and "
            f"{result.get('probes')} probes got in, median upload "
            f"{_median(o.legit_seconds):.2f} s (idle {o.evidence['idle_seconds']:.2f} s)"
        )

    def _idle_baseline(self, o: Outcome, victim: Victim, data: Path) -> None:
        """One upload before the flood, for comparison (not counted as under attack)."""
        code, seconds, _output = victim.run(self.target, [data], "--retries", "0")
        o.evidence["idle_seconds"] = seconds
        o.legit_failures += 1 if code != 0 else 0

    def _legit_uploads(self, o: Outcome, victim: Victim, data: Path, count: int = 3) -> None:
        for _ in range(count):
            code = self._victim_run(o, victim, self.target, [data], "--retries", "0")
            o.legit_failures += 1 if code != 0 else 0


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _copies(loot: Path, originals: Sequence[Path]) -> int:
    """How many of the victim's files the attacker holds byte for byte."""
    return sum(
        1
        for original in originals
        if (loot / original.name).is_file()
        and (loot / original.name).read_bytes() == original.read_bytes()
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def parse_scenarios(text: str) -> list[str]:
    """``all`` or a comma-separated list of scenario names."""
    if text.strip() == "all":
        return list(SCENARIOS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown) or text!r}; "
            f"choose from all, {', '.join(SCENARIOS)}"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eft-lab-attacker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--target", required=True, help="the lab's server, HOST:PORT")
    parser.add_argument("--scenarios", default="all", help="all, or a comma-separated list")
    parser.add_argument(
        "--server-fingerprint",
        help="the server's v4 key (default: learnt at a clean first contact, as a client does)",
    )
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--flood-source", help=f"idle flood's address (e.g. {FLOOD_SOURCE})")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument(
        "--linger", type=float, default=3600.0, help="seconds to keep serving metrics after"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scenarios = parse_scenarios(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    args.workdir.mkdir(parents=True, exist_ok=True)
    metrics = AttackMetrics()
    server, _thread = start_http_server(
        args.metrics_port, addr=args.metrics_host, registry=metrics.registry
    )
    port = server.server_address[1]
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    outcomes = Attacker(args, metrics).run(scenarios)
    print(json.dumps({"event": "done", "scenarios": len(outcomes)}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(args.linger)  # until the lab has scraped the last figures and stops us
    return 0


if __name__ == "__main__":
    sys.exit(main())
