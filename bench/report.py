"""The results as JSON, a Markdown table and a PNG chart (matplotlib), in bench/results/."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .common import GiB, MiB


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _default_name(results: dict[str, Any], protocol: int) -> str:
    """The row of the engines a user gets by default (the last backend measured)."""
    backend = results["meta"].get("eft_backends", ["auto"])[-1]
    label = {"pycryptodome": "PyCryptodome only", "auto": "default engines: OpenSSL"}
    return f"eft v{protocol} ({label.get(backend, backend)})"


def _two_core_bound(row: dict[str, Any]) -> str:
    """What two cores could move at the CPU per GiB measured in the same rounds (client
    and server overlapping perfectly), the share of it reached by the command, and how
    much of a core each process kept busy meanwhile (a process at 100 % is bound by its
    own work, whatever the other core does)."""
    client, server = row.get("client_cpu_s_per_gib"), row.get("server_cpu_s_per_gib")
    if not client or not server or math.isnan(client + server):
        return ""
    rate = row["mb_per_s"]
    bound = 2 * GiB / (client + server) / 1e6
    gib_per_s = rate * 1e6 / GiB
    return (
        f"; two cores at this CPU per GiB ({client:.2f} client + {server:.2f} server) move "
        f"at most {bound:.0f} MB/s, and the command reached {rate / bound:.0%} of it, the "
        f"client busy {client * gib_per_s:.0%} of a core and the server {server * gib_per_s:.0%}"
    )


def _session_bounds(row: dict[str, Any]) -> str:
    """The two bounds on sessions/s the CPU per session sets: the server's event loop on
    its one core, and the server and the load generator together on two."""
    loop = row.get("server_loop_cpu_ms_per_session")
    server, generator = row.get("server_cpu_ms_per_session"), row.get("load_cpu_ms_per_session")
    parts = []
    if loop and not math.isnan(loop):
        parts.append(f"its event loop's thread {loop:.2f} ms: at most {1000 / loop:.0f}/s")
    if server and generator and not math.isnan(server + generator):
        parts.append(f"both processes on two cores: at most {2000 / (server + generator):.0f}/s")
    return "; " + ", ".join(parts) if parts else ""


def targets(results: dict[str, Any]) -> list[str]:
    lines = []
    single = results.get("single", {}).get("rows", {})
    for protocol, goal, rate_goal in ((3, 2.0, 700), (4, 2.5, 1100)):
        name = _default_name(results, protocol)
        row = single.get(name)
        if row and "ratio_to_scp" in row:
            ratio = row["ratio_to_scp"]
            lines.append(
                f"- eft v{protocol} ≥ {goal:.1f}x scp (default cipher), same rounds: {name} "
                f"{ratio:.2f}x ({row['mb_per_s']:.0f} MB/s) by the command, "
                f"{_num(row.get('ratio_to_scp_transfer'), 2)}x by the transfer alone "
                f"— {_mark(ratio >= goal)}"
            )
        if row:
            rate = row["mb_per_s"]
            lines.append(
                f"- eft v{protocol} ≥ {rate_goal} MB/s on one file: {rate:.0f} MB/s by the "
                f"command, {_num(row.get('mb_per_s_transfer'))} by the transfer alone"
                f"{_two_core_bound(row)} — {_mark(rate >= rate_goal)}"
            )
        gcm = single.get("sftp aes128-gcm")
        if row and gcm and protocol == 3:
            fast = row["mb_per_s"] > gcm["mb_per_s"]
            lines.append(
                f"- eft v3 faster than sftp aes128-gcm: {row['mb_per_s']:.0f} vs "
                f"{gcm['mb_per_s']:.0f} MB/s — {_mark(fast)}"
            )
    eft_rows = [row for name, row in single.items() if name.startswith("eft")]
    eft_rows += list(results.get("big_file", {}).values())
    rss = [row["server_peak_rss_mib"] for row in eft_rows]
    if rss:
        largest = max(
            (row.get("file_size", 0) for row in results.get("big_file", {}).values()), default=0
        )
        upto = f" (files up to {largest / GiB:.2f} GiB)" if largest else ""
        lines.append(
            f"- server peak RSS < 64 MiB whatever the file size{upto}: at most "
            f"{max(rss):.1f} MiB — {_mark(max(rss) < 64)}"
        )
    micro = results.get("micro", {})
    for protocol, key in ((3, "reference_cpu_s_per_gib"), (4, "reference_cpu_s_per_gib_v4")):
        reference = micro.get(key)
        row = single.get(_default_name(results, protocol))
        if reference and row:
            cpu = row["server_cpu_s_per_gib"]
            user = cpu - row.get("server_system_s_per_gib", 0.0)
            lines.append(
                f"- v{protocol} server CPU per GiB within 2x of decrypt+check in one process, "
                f"in memory ({reference:.2f} s): {cpu:.2f} s = {cpu / reference:.1f}x "
                f"(the process's own part, without the kernel's receiving and writing: "
                f"{user:.2f} s = {user / reference:.1f}x) — {_mark(cpu <= 2 * reference)}"
            )
            with_io = micro.get(f"reference_file_to_file_v{protocol}")
            if with_io:
                lines.append(
                    f"- v{protocol} server CPU per GiB within 2x of decrypt+check in one "
                    f"process, file to file ({with_io:.2f} s, reading and writing included): "
                    f"{cpu:.2f} s = {cpu / with_io:.1f}x — {_mark(cpu <= 2 * with_io)}"
                )
    for version, load in results.get("concurrency", {}).items():
        if "1000" in load:
            row = load["1000"]
            lines.append(
                f"- {version}, 1000 concurrent clients: {row['failures']} failures over "
                f"{row['runs']} runs — {_mark(row['failures'] == 0)}"
            )
            sessions, p99 = row["sessions_per_s"], row["p99_latency_s"]
            lines.append(
                f"- {version}, 1000 clients: ≥ 500 sessions/s with p99 ≤ 2 s: "
                f"{sessions:.0f} sessions/s, p99 {p99:.2f} s (server "
                f"{_num(row.get('server_cpu_ms_per_session'), 2)} CPU-ms per session, the "
                f"load generator {_num(row.get('load_cpu_ms_per_session'), 2)} apart"
                f"{_session_bounds(row)}) — {_mark(sessions >= 500 and p99 <= 2)}"
            )
    handshake = results.get("handshake")
    if handshake:
        full = handshake["full handshake and log-in"]
        first = handshake["message 1 answered"]
        goal = handshake["target_ms"]
        lines.append(
            f"- v4 server CPU per full handshake ≤ {goal} ms: {full['server_cpu_ms']:.2f} ms "
            f"(runs {full['server_cpu_ms_min']:.2f} to {full['server_cpu_ms_max']:.2f}; "
            f"message 1 alone {first['server_cpu_ms']:.2f} ms), accept to close over "
            f"loopback — {_mark(full['server_cpu_ms'] <= goal)}"
        )
        noise = handshake.get("floor: the Noise responder alone")
        loop = handshake.get("floor: the event loop alone")
        if noise and loop:
            lines.append(
                f"  - the floor, measured beside it: the Noise XX responder alone on uvloop "
                f"{noise['server_cpu_ms']:.2f} ms (runs {noise['server_cpu_ms_min']:.2f} to "
                f"{noise['server_cpu_ms_max']:.2f}), the event loop and the kernel alone "
                f"{loop['server_cpu_ms']:.2f} ms; the eft server's own work above the floor "
                f"{full['server_cpu_ms'] - noise['server_cpu_ms']:.2f} ms"
            )
        cookie = handshake.get("message 1 under load (cookie reply)")
        if cookie:
            lines.append(
                f"- v4 message 1 under load, answered with a cookie reply (no DH): "
                f"{cookie['server_cpu_ms']:.2f} ms of server CPU against "
                f"{first['server_cpu_ms']:.2f} ms with the DH"
            )
        flood = handshake.get("log-in under a message-1 flood")
        if flood:
            lines.append(
                f"- v4 log-in under a message-1 flood from one process (cookies asked): "
                f"p50 {flood['flood']['p50_ms']:.2f} ms against {flood['idle']['p50_ms']:.2f} "
                f"ms alone ({flood['slowdown_p50']:.1f}x; p90 {flood['flood']['p90_ms']:.2f} "
                f"against {flood['idle']['p90_ms']:.2f})"
            )
        floods = handshake.get("upload under floods", {})
        for kind in ("message-1 flood", "idle-socket flood", "record-buffer flood"):
            row = floods.get(kind)
            if row:
                slowdown, cpu = row["slowdown"], row["cpu_s_during_flooded_upload"]
                target = row.get("target", floods["target"])
                lines.append(
                    f"- v4 8 MiB upload under the {kind} ≤ {target:.0f}x its idle "
                    f"time: {row['flood_s']['median']:.2f} s against "
                    f"{row['idle_s']['median']:.2f} s "
                    f"({slowdown['median']:.1f}x, rounds {slowdown['min']:.1f} to "
                    f"{slowdown['max']:.1f}; CPU-s meanwhile: server {cpu['server']:.2f}, "
                    f"client {cpu['client']:.2f}, flood {cpu['flood']:.2f}; server peak RSS "
                    f"{row['server_peak_rss_mib']['after']:.0f} MiB) — "
                    f"{_mark(slowdown['median'] <= target)}"
                )
                phases, per = row.get("phases_s"), row.get("server_cpu_ms_per_flood_connection")
                if phases and per:
                    lines.append(
                        "  - the client's phases, alone → flooded (median s): "
                        + ", ".join(
                            f"{phase.replace('_', '-')} {p['idle']:.2f} → {p['flood']:.2f}"
                            for phase, p in phases.items()
                        )
                        + f"; the server's CPU per flood connection {per['median']:.3f} ms "
                        f"({per['min']:.3f} to {per['max']:.3f}), "
                        f"{row['flood_connections_per_s']:.0f} connections/s"
                    )
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"# eft benchmark — {meta['date']}",
        "",
        f"{meta['machine']}; work directory `{meta['workdir']}`; "
        f"median of {meta['runs']} interleaved run(s) per figure"
        f"{' (BENCH_QUICK)' if meta['quick'] else ''}; {meta.get('seconds', 0):.0f} s in all; "
        f"load average {meta.get('load_average_at_start', ['?'])[0]} at the start, "
        f"{meta.get('load_average_at_end', ['?'])[0]} at the end (other work skews the figures).",
        "",
    ]
    single = results.get("single")
    out += single_file_section(single)
    big = results.get("big_file")
    if big:
        out += [
            "## The server's cost",
            "",
            "| upload | MB/s | server CPU s/GiB | of which kernel | server peak RSS MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        rows = []
        if single:
            size = single["file_size"]
            rows += [
                (f"{size / GiB:.2f} GiB, {name}", row)
                for name, row in single["rows"].items()
                if name.startswith("eft")
            ]
        rows += [
            (f"{row['file_size']:,} bytes ({row['file_size'] / GiB:.2f} GiB), {name}", row)
            for name, row in big.items()
        ]
        for label, row in rows:
            out.append(
                f"| {label} | {_num(row['mb_per_s'])} | {_num(row['server_cpu_s_per_gib'], 2)} "
                f"| {_num(row.get('server_system_s_per_gib'), 2)} "
                f"| {_num(row['server_peak_rss_mib'], 1)} |"
            )
        out += [
            "",
            "Version 3 sizes are u32, so a 4 GiB file cannot be sent over it: the largest "
            "file it carries, 4 GiB - 17 bytes, stands in. Version 4 sends the 4 GiB file.",
            "",
        ]
    load = results.get("concurrency")
    if load:
        out += [
            "## Many clients at once, 1 MiB each (register + key exchange + transfer)",
            "",
            "| version | clients | aggregate MB/s | sessions/s | p50 latency s | p99 latency s "
            "| failures | server CPU s | server CPU ms/session | of which its event loop "
            "| load generator CPU s | load generator CPU ms/session | server peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for version, by_clients in load.items():
            for clients, row in by_clients.items():
                out.append(
                    f"| {version} | {clients} | {_num(row['aggregate_mb_per_s'])} "
                    f"| {_num(row['sessions_per_s'])} | {_num(row['p50_latency_s'], 2)} "
                    f"| {_num(row['p99_latency_s'], 2)} | {row['failures']} "
                    f"| {_num(row['server_cpu_s'], 1)} "
                    f"| {_num(row.get('server_cpu_ms_per_session'), 2)} "
                    f"| {_num(row.get('server_loop_cpu_ms_per_session'), 2)} "
                    f"| {_num(row.get('load_cpu_s'), 1)} "
                    f"| {_num(row.get('load_cpu_ms_per_session'), 2)} "
                    f"| {_num(row['server_peak_rss_mib'], 1)} |"
                )
        out += [
            "",
            "Server CPU: user + system of the server's PID (/proc), from after its start-up "
            "to the load's end, over the sessions completed; of which its first thread's, "
            "the event loop's, whose one core bounds sessions/s whatever the other threads "
            "do. The load generator (one "
            "process doing every client's work, on the same two cores) is measured apart: "
            "its own user + system CPU while the sessions ran (start-up, the payload and "
            "the keys left out).",
        ]
        errors = sorted(
            {e for rows in load.values() for row in rows.values() for e in row["errors"]}
        )
        if errors:
            out += ["", "Errors seen: " + "; ".join(errors)]
        out.append("")
    micro = results.get("micro")
    if micro:
        out += [
            "## In-process cost of the bulk steps (CPU s per GiB)",
            "",
            "| step | CPU s/GiB | MB/s per core |",
            "|---|---:|---:|",
        ]
        for name, cost in micro["per_gib"].items():
            out.append(f"| {name} | {cost:.2f} | {GiB / cost / 1e6:,.0f} |")
        out.append("")
    prof = results.get("profile")
    if prof and "skipped" not in prof:
        out += ["## Where the time goes (py-spy, share of samples)", ""]
        for side in ("v3 server", "v3 client", "v4 server", "v4 client"):
            if side in prof:
                out.append(
                    f"**{side}** ({prof[side]['samples']} samples): "
                    + "; ".join(f"{name} {share:.0%}" for name, share in prof[side]["self"][:8])
                )
                out.append("")
    out += _registry_memory(results)
    if results.get("many_files"):
        from . import many_files  # noqa: PLC0415

        out += ["", *many_files.markdown(results["many_files"])]
    if results.get("replicas"):
        from . import replicas  # noqa: PLC0415

        out += ["", *replicas.markdown(results["replicas"])]
    lines = targets(results)
    if lines:
        out += ["## Targets", "", *lines, ""]
    return "\n".join(out)


def single_file_section(single: dict[str, Any] | None) -> list[str]:
    """The one-file table by both instruments, and what was not measured."""
    if not single:
        return []
    size = single["file_size"]
    out = [
        f"## One file of {size / MiB:,.0f} MiB of random data over loopback",
        "",
        "Two instruments: **command** is the client command's wall time from its start "
        "(process start-up, log-in and key exchange included) to its exit; **transfer** "
        "is the file alone by the tool's own account (eft: its `--json` events "
        "`file_started` to `file_verified`; scp and sftp: OpenSSH's progress meter's "
        "final rate; rsync: `--progress`'s). Ratios to scp are taken per round on the "
        "same basis.",
        "",
        "| method | MB/s command | x scp command | MB/s transfer | x scp transfer "
        "| s outside the transfer | client CPU s/GiB | server CPU s/GiB | of which kernel "
        "| server peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in single["rows"].items():
        out.append(
            f"| {name} | {_num(row['mb_per_s'])} | {_num(row.get('ratio_to_scp'), 2)} "
            f"| {_num(row.get('mb_per_s_transfer'))} "
            f"| {_num(row.get('ratio_to_scp_transfer'), 2)} "
            f"| {_num(row.get('outside_transfer_s'), 2)} "
            f"| {_num(row.get('client_cpu_s_per_gib'), 2)} "
            f"| {_num(row.get('server_cpu_s_per_gib'), 2)} "
            f"| {_num(row.get('server_system_s_per_gib'), 2)} "
            f"| {_num(row.get('server_peak_rss_mib'), 1)} |"
        )
    phased = {name: row["phases_s"] for name, row in single["rows"].items() if "phases_s" in row}
    if phased:
        out += [
            "",
            "Where an eft command's time goes (median seconds, from its events):",
            "",
            "| method | start-up (until connected) | log-in and key exchange "
            "| the file | exit | command |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, phases in phased.items():
            out.append(
                f"| {name} | {_num(phases['start_up_s'], 3)} | {_num(phases['session_s'], 3)} "
                f"| {_num(phases['transfer_s'], 3)} | {_num(phases['exit_s'], 3)} "
                f"| {_num(single['rows'][name]['seconds']['median'], 3)} |"
            )
    out.append("")
    out += [f"Per round, command MB/s: {_per_round(single, size)}."]
    if single.get("ssh_missing"):
        out.append(f"\nscp/sftp/rsync skipped: missing {single['ssh_missing']}.")
    if single.get("wormhole_missing"):
        out.append(f"\nmagic-wormhole skipped: missing {single['wormhole_missing']}.")
    if single.get("wormhole_stuck_attempts"):
        out.append(
            f"\nmagic-wormhole: {single['wormhole_stuck_attempts']} attempt(s) stopped for not"
            " ending in time and made again with a new code (what they said is in the log)."
        )
    out.append("")
    return out


def _per_round(single: dict[str, Any], size: int) -> str:
    parts = []
    for name, row in single["rows"].items():
        runs = row["seconds"]["runs"]
        parts.append(f"{name} " + ", ".join(_num(size / s / 1e6) for s in runs))
    return "; ".join(parts)


def _registry_memory(results: dict[str, Any]) -> list[str]:
    """Memory against files stored: the registry in process, and the lab's soak."""
    out: list[str] = []
    registry = results.get("registry_memory")
    if registry:
        out += [
            "## Memory per stored file (registry filled in process)",
            "",
            "| engine | records measured (after warm-up) | RSS growth bytes/file "
            "| records/s | cache entries |",
            "|---|---:|---:|---:|---:|",
        ]
        for engine, row in registry.items():
            out.append(
                f"| {engine} | {row['records']:,} (after {row['warm_up']:,}) "
                f"| {_num(row['rss_bytes_per_file'], 1)} | {_num(row['records_per_s'])} "
                f"| {row['cache_entries'] if row['cache_entries'] is not None else 'all'} |"
            )
        out += ["", "Target: under 50 bytes per file for sqlite (flat).", ""]
    soak = results.get("soak")
    if soak:
        out += [
            f"## Soak: the lab for {soak['seconds'] / 60:.1f} min (`make soak`, {soak['date']})",
            "",
            f"Server RSS {soak['rss_start_mib']:.1f} → {soak['rss_end_mib']:.1f} MiB "
            f"(peak {soak['rss_peak_mib']:.1f}); after {soak['warm_up_s']:.0f} s of warm-up "
            f"{_num(soak['slope_kib_per_min'], 1)} KiB/min, "
            f"{_num(soak['bytes_per_stored_file'], 1)} bytes per stored file "
            f"({soak['files_stored']:,} files stored): "
            f"{'flat' if soak['flat'] else 'NOT flat'}.",
        ]
        kinds = soak.get("bytes_per_stored_file_by_kind")
        if kinds:
            out.append(
                "Of which, bytes per stored file: "
                + ", ".join(f"{kind} {value}" for kind, value in kinds.items())
                + " (RssAnon: heaps; RssFile: code and libraries paged in; RssShmem: "
                "SQLite's WAL index)."
            )
        less_pool = soak.get("bytes_per_stored_file_less_record_buffers")
        if less_pool is not None:
            out.append(
                f"Version 4's record-buffer pool (1 MiB per record received at once, kept; "
                f"at most `--record-buffers`) held {soak['record_buffers_after_warm_up_mib']}"
                f" → {soak['record_buffers_end_mib']} MiB over that stretch; RSS less the "
                f"pool: {_num(less_pool, 1)} bytes per stored file."
            )
        if soak.get("load_average_1_5_15"):
            out.append(f"Load average at the end (1, 5, 15 min): {soak['load_average_1_5_15']}.")
        out.append("")
    return out


def chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    single = results.get("single", {}).get("rows", {})
    load = results.get("concurrency", {})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    if single:
        names = list(single)
        rates = [single[n]["mb_per_s"] for n in names]
        colors = [
            "tab:blue" if n.startswith("eft") else "tab:gray" if "TCP" in n else "tab:orange"
            for n in names
        ]
        bars = axes[0].barh(names, rates, color=colors)
        axes[0].bar_label(bars, fmt="%.0f", padding=3)
        if "scp (default cipher)" in single:
            scp = single["scp (default cipher)"]["mb_per_s"]
            for factor, label in ((2.0, "2x scp (v3 target)"), (2.5, "2.5x scp (v4)")):
                axes[0].axvline(factor * scp, color="tab:red", linestyle="--", linewidth=1)
                axes[0].text(factor * scp, -0.6, f" {label}", color="tab:red", fontsize=8)
        axes[0].invert_yaxis()
        axes[0].set_xlabel("MB/s (median)")
        size = results["single"]["file_size"]
        axes[0].set_title(f"One {size / MiB:,.0f} MiB file over loopback")
    if load:
        twin = axes[1].twinx()
        for version, marker in (("v3", "o"), ("v4", "s")):
            rows = load.get(version, {})
            if not rows:
                continue
            counts = [int(c) for c in rows]
            axes[1].plot(
                counts,
                [rows[c]["p99_latency_s"] for c in rows],
                f"{marker}-",
                label=f"{version} p99",
            )
            twin.plot(
                counts,
                [rows[c]["sessions_per_s"] for c in rows],
                f"{marker}:",
                alpha=0.6,
                label=f"{version} sessions/s",
            )
        axes[1].set_xscale("log")
        axes[1].set_xlabel("concurrent clients (1 MiB each)")
        axes[1].set_ylabel("p99 session latency, s")
        twin.set_ylabel("sessions/s")
        twin.set_ylim(bottom=0)
        lines = axes[1].get_legend_handles_labels()
        other = twin.get_legend_handles_labels()
        axes[1].legend(lines[0] + other[0], lines[1] + other[1], loc="upper left", fontsize=8)
        axes[1].set_title("Many clients at once")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict[str, Any], directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(results)
    (directory / "bench.md").write_text(text + "\n")
    chart(results, directory / "bench.png")
    return text
