"""``eft-lab`` (``make lab``): the lab's topology as processes on this machine.

A server, N load clients sending generated files in a loop (a share of attempts damaged
on purpose), optionally C++ clients beside them, and Prometheus when its binary is
installed, scraping everything every second. A live view shows per-client and server
figures; at the end a summary says what happened and where to look. The run fails if
any file a client counted as verified is missing or differs on the server.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from eft_protocol import __version__

from . import attack_report
from . import prometheus as prom
from .attacker import SERVER_ARGS as ATTACK_SERVER_ARGS
from .attacker import parse_scenarios
from .cpp_clients import CppClientLoop, find_cpp_client
from .processes import LabClientProcess, ServerProcess
from .replicas import ServerReplicas
from .verify import count_stored_files, verify_manifests, where_files_live
from .view import LiveView, print_summary

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "dashboards" / "eft-lab.json"
#: The alert rules, loaded when run from a checkout (an installed eft has none).
ALERT_RULES = REPO_ROOT / "monitoring" / "prometheus" / "alerts.yml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-lab", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--clients", type=int, default=2, help="Python load clients speaking version 3 (default 2)"
    )
    parser.add_argument(
        "--v4-clients",
        type=int,
        default=2,
        help="Python load clients speaking version 4 (default 2)",
    )
    parser.add_argument("--cpp-clients", type=int, default=0, help="C++ clients beside them")
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="server replicas (default 1); more than 1: behind HAProxy, on a PostgreSQL "
        "registry and one S3 store (SeaweedFS) started for the run, one server key "
        "(docs/SCALING.md; pip install 'eft[scale]')",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of traffic (0: until Ctrl-C)"
    )
    parser.add_argument("--rate", type=float, default=2.0, help="files per second per client")
    parser.add_argument("--corrupt-rate", type=float, default=0.15, help="share damaged (0-1)")
    parser.add_argument("--max-size", type=int, default=1 << 20, help="largest file, bytes")
    parser.add_argument("--out", type=Path, help="logs and files (default lab-runs/<time>)")
    parser.add_argument(
        "--prometheus",
        choices=("auto", "on", "off"),
        default="auto",
        help="run Prometheus (auto: if its binary is installed)",
    )
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds")
    parser.add_argument(
        "--dashboard",
        type=Path,
        help="Grafana dashboard whose queries Prometheus must answer "
        "(default: the checkout's monitoring/grafana/dashboards/eft-lab.json)",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    parser.add_argument(
        "--attack",
        metavar="SCENARIO[,SCENARIO...]",
        help="put an attacker in the lab: all, or some of "
        "steal-key, alter-crc, replay, hijack, record-flood, idle-flood; each runs on "
        "version 3 and on version 4, and the lab checks what it achieved",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.clients < 0 or args.v4_clients < 0 or args.cpp_clients < 0:
        parser.error("client counts cannot be negative")
    if args.clients + args.v4_clients + args.cpp_clients < 1:
        parser.error("the lab needs at least one client")
    if args.servers < 1:
        parser.error("--servers must be at least 1")
    if not 0 <= args.corrupt_rate <= 1:
        parser.error("--corrupt-rate must be between 0 and 1")
    try:
        args.attack = parse_scenarios(args.attack) if args.attack else []
    except ValueError as exc:
        parser.error(f"--attack: {exc}")
    if args.attack and args.servers > 1:
        parser.error("--attack runs against one server: leave --servers out")
    binary = prom.find_binary()
    if args.prometheus == "on" and binary is None:
        parser.error(
            "--prometheus on, but no prometheus binary (Debian: apt-get install prometheus)"
        )
    if args.prometheus == "off":
        binary = None
    cpp_binary = find_cpp_client() if args.cpp_clients else None
    if args.cpp_clients and cpp_binary is None:
        parser.error("--cpp-clients needs the C++ client: run client/cpp/build.sh first")
    if args.dashboard is not None and not args.dashboard.is_file():
        parser.error(f"--dashboard {args.dashboard}: no such file")
    if args.dashboard is None and DEFAULT_DASHBOARD.is_file():
        args.dashboard = DEFAULT_DASHBOARD  # run from a checkout; an install has none
    out = (args.out or Path("lab-runs") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    console = Console()
    # SIGTERM ends the lab as Ctrl-C does: traffic stops, the summary is still made.
    signal.signal(signal.SIGTERM, _interrupt)
    return Lab(args, out, console, binary, cpp_binary).run()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


class Lab:
    def __init__(
        self,
        args: argparse.Namespace,
        out: Path,
        console: Console,
        prometheus_binary: str | None,
        cpp_binary: Path | None,
    ) -> None:
        self.args, self.out, self.console = args, out, console
        self.prometheus_binary, self.cpp_binary = prometheus_binary, cpp_binary
        # The floods need the small limits their findings are about (docs/SECURITY.md).
        attack_args = [arg for name in args.attack for arg in ATTACK_SERVER_ARGS.get(name, ())]
        self.server: ServerProcess | ServerReplicas = (
            ServerReplicas(out, args.servers)
            if args.servers > 1
            else ServerProcess(
                out / "server" / "data", out / "server.log", ("--metrics-port", "0", *attack_args)
            )
        )
        self.attacker = (
            attack_report.AttackerProcess(out / "attacker", args.attack) if args.attack else None
        )
        self.clients: list[LabClientProcess] = []
        self.cpp_clients: list[CppClientLoop] = []
        self.prometheus: prom.Prometheus | None = None
        self.interrupted = False

    def run(self) -> int:
        (self.out / "server").mkdir(parents=True, exist_ok=True)
        self.console.print(f"[bold]eft lab[/] in {self.out}")
        started = time.monotonic()
        try:
            self._start()
            self._watch()  # the first Ctrl-C (or SIGTERM) ends the traffic, not the lab
            traffic_seconds = time.monotonic() - started
            self._stop_traffic()
            summary = self._summarise(traffic_seconds)
        except KeyboardInterrupt:  # before the traffic began, or a second one
            self.console.print("interrupted: every process stopped, no summary")
            return 130
        finally:
            self._stop_all()
        print_summary(self.console, summary)
        if self.attacker is not None:
            attack_report.print_attacks(self.console, summary["attacks"])
        if self.args.summary_json:
            self.args.summary_json.write_text(json.dumps(summary, indent=2))
        return 1 if summary["problems"] else 0

    def _start(self) -> None:
        self.server.start()
        ports = ", ".join(str(port) for port in self.server.metrics_ports)
        if isinstance(self.server, ServerReplicas):
            self.console.print(
                f"{self.server.count} server replicas behind HAProxy on {self.server.address}, "
                f"metrics on 127.0.0.1 ports {ports}, files in {self.server.files_dirs}"
            )
        else:
            self.console.print(f"server on {self.server.address}, metrics on 127.0.0.1:{ports}")
        client_args = (
            "--rate", str(self.args.rate),
            "--corrupt-rate", str(self.args.corrupt_rate),
            "--max-size", str(self.args.max_size),
            "--linger", "120",
        )  # fmt: skip
        for protocol, count in ((3, self.args.clients), (4, self.args.v4_clients)):
            for index in range(count):
                name = f"lab-v{protocol}-client-{index + 1}"
                args = (*client_args, "--protocol", str(protocol))
                client = LabClientProcess(self.out / "clients" / name, name, args)
                client.protocol = protocol
                self.clients.append(client.start(self.server.address))
        for index in range(self.args.cpp_clients):
            assert self.cpp_binary is not None
            name = f"lab-cpp-{index + 1}"
            loop = CppClientLoop(self.cpp_binary, self.out / "clients" / name, name, seed=index)
            self.cpp_clients.append(
                loop.start(self.server.address, self.args.rate, self.args.max_size)
            )
        if self.attacker is not None:
            listening = next(r for r in self.server.logs() if r.get("event") == "listening")
            self.attacker.start(self.server.address, str(listening["fingerprint"]))
            self.console.print(
                f"attacker ({', '.join(self.args.attack)}) on v3 and v4, "
                f"metrics on 127.0.0.1:{self.attacker.metrics_port}"
            )
        if self.prometheus_binary:
            config = self.out / "prometheus.yml"
            prom.write_config(
                config,
                self.server.metrics_ports,
                [c.metrics_port for c in self.clients],
                self.args.scrape_interval,
                rules=ALERT_RULES if ALERT_RULES.is_file() else None,
                attacker_ports=[self.attacker.metrics_port] if self.attacker else [],
            )
            self.prometheus = prom.Prometheus(self.prometheus_binary, self.out, config)
            self.prometheus.wait_ready()
            self.console.print(f"Prometheus on {self.prometheus.url}")
        else:
            self.console.print(
                "Prometheus not installed: running without it (apt-get install prometheus)"
            )

    def _watch(self) -> None:
        view = LiveView(self.console, self.server, self.clients, self.cpp_clients)
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        try:
            view.run_until(deadline)
            # The traffic goes on until the attacker has played every scenario.
            while self.attacker is not None and not self.attacker.done:
                view.run_until(time.monotonic() + 1.0)
        except KeyboardInterrupt:
            self.interrupted = True
            self.console.print("stopping ...")

    def _stop_traffic(self) -> None:
        for client in self.clients:
            client.stop_sending()
        for loop in self.cpp_clients:
            loop.stop()
        for client in self.clients:
            client.wait_stopped(timeout=120)
        for loop in self.cpp_clients:
            # The file in flight finishes (never killed): the server may still store it,
            # and the summary must count it on both sides.
            loop.join()
        if self.prometheus is not None:
            self._wait_for_final_scrape()

    def _wait_for_final_scrape(self) -> None:
        """Until Prometheus has scraped the server's final count of verified transfers
        (the server's own /metrics says what it is), and one more scrape interval so the
        clients' final counts are in too; bounded, should Prometheus stop scraping."""
        assert self.prometheus is not None
        final = LiveView(self.console, self.server, [], []).server_figures()["verified"]
        deadline = time.monotonic() + 30 * self.args.scrape_interval
        while time.monotonic() < deadline:
            if self._prometheus_verified() == final:
                time.sleep(self.args.scrape_interval)
                return
            time.sleep(self.args.scrape_interval / 4)

    def _prometheus_verified(self) -> int:
        assert self.prometheus is not None
        verified = self.prometheus.query(
            'sum(eft_transfers_total{job="eft-server",outcome="verified"})'
        )
        return int(float(verified[0]["value"][1])) if verified else 0

    def _summarise(self, seconds: float) -> dict[str, Any]:
        files_dirs = self.server.files_dirs
        client_dirs = [c.workdir for c in self.clients] + [c.workdir for c in self.cpp_clients]
        verification = verify_manifests(client_dirs, files_dirs)
        view = LiveView(self.console, self.server, self.clients, self.cpp_clients)
        summary: dict[str, Any] = {
            "seconds": round(seconds, 1),
            "clients": view.client_rows(),
            "server": view.server_figures(),
            "verified_on_disk": asdict(verification),
            "stored_files": count_stored_files(files_dirs),
            "throughput_mb_s": round(verification.bytes / max(seconds, 1e-9) / 1e6, 2),
            "logs": {
                "server": str(self.server.current_log),
                "clients": str(self.out / "clients"),
                "files": where_files_live(files_dirs),
            },
            "metrics_url": f"http://127.0.0.1:{self.server.metrics_port}/metrics",
            "problems": list(verification.problems),
        }
        if isinstance(self.server, ServerReplicas):
            summary["replicas"] = self.server.per_replica()
        if self.attacker is not None:
            outcomes = self.attacker.outcomes()
            summary["attacks"] = outcomes
            if not self.interrupted:
                summary["problems"] += attack_report.verify_outcomes(
                    outcomes, self.args.attack, self.server.data_dir
                )
            failed = [r["client"] for r in summary["clients"] if r.get("failed")]
            if failed:
                summary["problems"].append(f"legitimate clients failed under attack: {failed}")
        if self.prometheus is not None:
            summary["prometheus"] = self._check_prometheus(summary)
        return summary

    def _check_prometheus(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Every dashboard expression must return data; counts must match the disk."""
        assert self.prometheus is not None
        panels = []
        if self.args.dashboard is None:
            self.console.print(
                "no dashboard file here (an installed eft has none): its queries were not "
                "checked; pass --dashboard monitoring/grafana/dashboards/eft-lab.json"
            )
        else:
            attacks = self.attacker is not None
            for title, expr in prom.dashboard_queries(self.args.dashboard, attacks=attacks):
                series = len(self.prometheus.query(expr))
                panels.append({"panel": title, "expr": expr, "series": series})
                if series == 0:
                    summary["problems"].append(f"dashboard panel {title!r} has no data: {expr}")
        count = self._prometheus_verified()
        attack_figures: dict[str, int | None] = {}
        if self.attacker is not None:
            problems, attack_figures = attack_report.check_metrics(
                self.prometheus.query, summary["attacks"], 10, self.args.scrape_interval
            )
            summary["problems"] += problems
        # An attack makes the server verify some uploads more than once (a replay, a
        # victim sending one name twice): then only fewer transfers than files is wrong.
        if count < summary["stored_files"] or (
            self.attacker is None and count != summary["stored_files"]
        ):
            summary["problems"].append(
                f"Prometheus counts {count} verified transfers, "
                f"the disk holds {summary['stored_files']}"
            )
        # A healthy lab raises none of the alerts (a pending one has not lasted its "for").
        alerts = {rule["name"]: rule["state"] for rule in self.prometheus.alert_rules()}
        firing = sorted(name for name, state in alerts.items() if state == "firing")
        if firing and self.attacker is None:  # under attack, the defenders' alerts may fire
            summary["problems"].append(f"alerts firing: {', '.join(firing)}")
        return {
            "url": self.prometheus.url,
            "verified_transfers": count,
            "panels": panels,
            "alerts": alerts,
            "attack_series": attack_figures,
        }

    def _stop_all(self) -> None:
        if self.attacker is not None:
            self.attacker.kill()
        for client in self.clients:
            client.kill()
        for loop in self.cpp_clients:
            loop.stop()
            loop.join()
        if self.prometheus is not None:
            self.prometheus.stop()
        if isinstance(self.server, ServerReplicas) or self.server.proc is not None:
            self.server.stop()


if __name__ == "__main__":
    sys.exit(main())
