"""What the lab shows: a live table while it runs, and the summary at the end.

Figures come from the processes' own /metrics endpoints, not from Prometheus, so the
view works without it.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .cpp_clients import CppClientLoop
from .processes import LabClientProcess, ServerProcess
from .replicas import ServerReplicas
from .scrape import scrape, total


class LiveView:
    def __init__(
        self,
        console: Console,
        server: ServerProcess | ServerReplicas,
        clients: list[LabClientProcess],
        cpp_clients: list[CppClientLoop],
    ) -> None:
        self.console, self.server = console, server
        self.clients, self.cpp_clients = clients, cpp_clients

    def client_rows(self) -> list[dict[str, Any]]:
        rows = []
        for client in self.clients:
            m = scrape(client.metrics_port)
            rows.append(
                {
                    "client": client.name,
                    "kind": f"py v{client.protocol}",
                    "attempts": int(total(m, "eft_client_attempts_total")),
                    "verified": int(total(m, "eft_client_transfers_total", outcome="verified")),
                    "gave_up": int(total(m, "eft_client_transfers_total", outcome="gave_up")),
                    "failed": int(total(m, "eft_client_transfers_total", outcome="failed")),
                    "retries": int(total(m, "eft_client_retries_total")),
                    "corrupted": int(total(m, "eft_client_corrupted_attempts_total")),
                    "mb_sent": round(total(m, "eft_client_sent_bytes_total") / 1e6, 2),
                }
            )
        for loop in self.cpp_clients:
            rows.append(
                {
                    "client": loop.name,
                    "kind": "c++",
                    "attempts": loop.runs,
                    "verified": loop.verified,
                    "gave_up": loop.gave_up,
                    "failed": loop.failed,
                    "retries": 0,
                    "corrupted": 0,
                    "mb_sent": round(loop.bytes_verified / 1e6, 2),
                }
            )
        return rows

    def server_figures(self) -> dict[str, Any]:
        # One server, or the sum over the replicas (eft-lab --servers N).
        scraped = [scrape(port) for port in self.server.metrics_ports]

        def sum_of(name: str, **labels: str) -> float:
            return sum(total(m, name, **labels) for m in scraped)

        return {
            "connections_active": int(sum_of("eft_connections_active")),
            "connections": int(sum_of("eft_connections_total")),
            "verified": int(sum_of("eft_transfers_total", outcome="verified")),
            "crc_mismatches": int(sum_of("eft_crc_mismatches_total")),
            "gave_up": int(sum_of("eft_transfers_total", outcome="gave_up")),
            "protocol_errors": int(sum_of("eft_protocol_errors_total")),
            "mb_received": round(sum_of("eft_received_ciphertext_bytes_total") / 1e6, 2),
            "rss_mb": round(sum_of("process_resident_memory_bytes") / 2**20, 1),
        }

    def table(self, title: str) -> Table:
        table = Table(title=title)
        columns = (
            "client",
            "kind",
            "attempts",
            "verified",
            "gave_up",
            "failed",
            "retries",
            "mb_sent",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in ("client", "kind") else "right")
        for row in self.client_rows():
            table.add_row(*(str(row[c]) for c in columns))
        s = self.server_figures()
        table.caption = (
            f"server: {s['connections_active']} connections open, {s['verified']} verified, "
            f"{s['crc_mismatches']} CRC mismatches, {s['protocol_errors']} protocol errors, "
            f"{s['mb_received']} MB received, RSS {s['rss_mb']} MiB"
        )
        return table

    def run_until(self, deadline: float | None) -> None:
        """Refresh every second until the deadline (None: until Ctrl-C)."""
        if not self.console.is_terminal:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(min(5.0, max(0.0, (deadline or 1e18) - time.monotonic())))
                s = self.server_figures()
                self.console.print(
                    f"... {s['verified']} verified, {s['crc_mismatches']} CRC mismatches, "
                    f"{s['connections_active']} connections open"
                )
            return
        with Live(self.table("eft lab (Ctrl-C to stop)"), console=self.console) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1.0)
                live.update(self.table("eft lab (Ctrl-C to stop)"))


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="eft lab summary")
    columns = ("client", "kind", "attempts", "verified", "gave_up", "failed", "retries", "mb_sent")
    for column in columns:
        table.add_column(column, justify="left" if column in ("client", "kind") else "right")
    for row in summary["clients"]:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    s, v = summary["server"], summary["verified_on_disk"]
    console.print(
        f"{summary['seconds']} s of traffic: server verified {s['verified']} files, "
        f"{s['crc_mismatches']} CRC mismatches retried or given up, "
        f"{s['protocol_errors']} protocol errors; {v['checked']} client-verified files "
        f"checked byte for byte in the store ({v['bytes']:,} bytes, "
        f"{summary['throughput_mb_s']} MB/s)"
    )
    for row in summary.get("replicas", []):
        console.print(
            f"replica {row['replica']} ({row['address']}): {row['connections']} connections "
            f"({row['proxied']} through HAProxy), {row['verified']} verified, "
            f"{row['health_checks']} health checks answered"
        )
    console.print(f"metrics:     {summary['metrics_url']} (while running)")
    if "prometheus" in summary:
        p = summary["prometheus"]
        with_data = sum(1 for panel in p["panels"] if panel["series"])
        console.print(
            f"prometheus:  {p['url']} (stopped); {p['verified_transfers']} verified transfers; "
            f"{with_data}/{len(p['panels'])} dashboard queries returned data; "
            f"{len(p['alerts'])} alert rules loaded, "
            f"{sum(1 for s in p['alerts'].values() if s == 'firing')} firing"
        )
    for key, path in summary["logs"].items():
        console.print(f"{key + ':':<12} {path}")
    for problem in summary["problems"]:
        console.print(f"[red]problem:[/] {problem}")
    if not summary["problems"]:
        console.print("[green]every verified file is on the server, byte for byte[/]")
