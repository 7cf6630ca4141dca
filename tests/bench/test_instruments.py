"""The bench's second instrument and its report, on recorded outputs (no process, no timing).

The outputs below are what the tools printed on this project's machine: scp and sftp
(OpenSSH 9.2) on a pseudo-terminal, rsync 3.5 with ``--progress``, the eft client with
``--json``.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import report
from bench.instruments import eft_events, eft_phases, meter_seconds, rsync_seconds
from bench.runs import BASELINE, Measured, single_rows, summarize_load

MiB = 1 << 20

SCP = (
    "\rsrc.bin                                         0%    0     0.0KB/s   --:-- ETA"
    "\rsrc.bin                                       100%   64MB  80.3MB/s   00:00    \r\n"
)
SFTP = (
    "sftp> progress\r\nProgress meter enabled\r\nsftp> put /tmp/src.bin /tmp/dst.bin\r\n"
    "\rsrc.bin                                         0%    0     0.0KB/s   --:-- ETA"
    "\rsrc.bin                                       100% 1024MB   1.1GB/s   00:00    \r\n"
)
RSYNC = (
    "src.bin\n\r         32,768   0%    0.00kB/s    0:00:00  "
    "\r     41,451,520  61%   39.30MB/s    0:00:00  "
    "\r     67,108,864 100%   46.62MB/s    0:00:01 (xfr#1, to-chk=0/1)\n"
)


def _event(kind: str, at: float, **fields: object) -> str:
    return json.dumps({"event": kind, "time": at, **fields})


def test_the_progress_meters_final_rate_gives_the_file_alone() -> None:
    assert meter_seconds(SCP, 64 * MiB) == pytest.approx(64 / 80.3)
    # Only the 100% line counts, whatever came before it; G is 1024 MiB.
    assert meter_seconds(SFTP, 1024 * MiB) == pytest.approx(1 / 1.1)
    assert rsync_seconds(RSYNC, 64 * MiB) == pytest.approx(64 / 46.62)
    assert rsync_seconds("x 100%  512.00kB/s 0:00:01 (xfr#1)\n", 1024 * 1024) == 2.0


def test_no_final_line_means_no_figure() -> None:
    unfinished = SCP.split("\rsrc.bin  ", 1)[0] + "\rsrc.bin   61%   39MB  40.0MB/s   00:01 ETA"
    assert meter_seconds(unfinished, 64 * MiB) is None
    assert meter_seconds("", 1) is None
    assert rsync_seconds(SCP.replace("100%", "99%"), 64 * MiB) is None
    # scp's meter is not rsync's: a meter line has the size between the percent and rate.
    assert rsync_seconds(SCP, 64 * MiB) is None


def test_an_eft_run_is_cut_at_its_events() -> None:
    stdout = "\n".join(
        [
            "not json",
            _event("connected", 100.40, host="127.0.0.1"),
            _event("registered", 100.45, name="bench"),
            _event("file_started", 100.50, file="a", attempt=1),
            _event("progress", 100.9, sent=1),
            "{broken",
            _event("file_verified", 101.75, file="a"),
            _event("done", 101.76, files=1),
        ]
    )
    events = eft_events(stdout)
    assert [e["event"] for e in events] == [
        "connected",
        "registered",
        "file_started",
        "progress",
        "file_verified",
        "done",
    ]
    phases = eft_phases(events, launched=100.0, exited=101.85)
    assert phases.start_up == pytest.approx(0.40)
    assert phases.session == pytest.approx(0.10)
    assert phases.transfer == pytest.approx(1.25)
    assert phases.exit == pytest.approx(0.10)
    total = phases.start_up + phases.session + phases.transfer + phases.exit
    assert total == pytest.approx(1.85)


def test_a_retried_file_counts_from_its_last_attempt_and_startup_to_the_first_connection() -> None:
    events = eft_events(
        "\n".join(
            [
                _event("connected", 1.0),
                _event("file_started", 1.2, attempt=1),
                _event("connection_retry", 1.5),
                _event("connected", 2.0),
                _event("file_started", 2.1, attempt=2),
                _event("file_verified", 3.1),
            ]
        )
    )
    phases = eft_phases(events, launched=0.5, exited=3.2)
    assert phases.start_up == pytest.approx(0.5)
    assert phases.transfer == pytest.approx(1.0)


def test_a_run_without_its_verdict_is_an_error() -> None:
    events = eft_events(_event("connected", 1.0) + "\n" + _event("file_started", 1.1))
    with pytest.raises(ValueError, match="file_verified"):
        eft_phases(events, 0.0, 2.0)


def test_ratios_to_scp_are_taken_per_round_on_each_basis() -> None:
    size = 1000 * MiB
    measured = {
        "eft v4 (default engines: OpenSSL)": [
            Measured(2.0, 1.0, {"start_up_s": 0.5, "transfer_s": 1.0}),
            Measured(3.0, 2.0, {"start_up_s": 0.7, "transfer_s": 2.0}),
            Measured(4.0, 1.5, {"start_up_s": 0.6, "transfer_s": 1.5}),
        ],
        BASELINE: [
            Measured(4.0, 3.0, client_cpu=2.0),
            Measured(3.0, 2.0, client_cpu=4.0),
            Measured(8.0, 6.0, client_cpu=3.0),
        ],
        "magic-wormhole (local mailbox and relay)": [Measured(10.0)] * 3,
    }
    rows = single_rows(measured, size)
    eft = rows["eft v4 (default engines: OpenSSL)"]
    # Same-round ratios 2.0, 1.0, 2.0 (command) and 3.0, 1.0, 4.0 (transfer): medians,
    # not the ratio of the medians (3.0 / 3.0 = 1.0 and 3.0 / 1.5 = 2.0).
    assert eft["ratio_to_scp"] == 2.0
    assert eft["ratio_to_scp_transfer"] == 3.0
    assert eft["mb_per_s"] == pytest.approx(size / 3.0 / 1e6)
    assert eft["mb_per_s_transfer"] == pytest.approx(size / 1.5 / 1e6)
    assert eft["phases_s"] == {"start_up_s": 0.6, "transfer_s": 1.5}
    assert eft["outside_transfer_s"] == 1.0  # the median of 1.0, 1.0, 2.5
    assert rows[BASELINE]["ratio_to_scp"] == rows[BASELINE]["ratio_to_scp_transfer"] == 1.0
    # CPU per GiB of a 1000 MiB file: the median run's 3.0 s scaled to 1024 MiB.
    assert rows[BASELINE]["client_cpu_s_per_gib"] == pytest.approx(3.0 * 1024 / 1000)
    assert "client_cpu_s_per_gib" not in eft
    hole = rows["magic-wormhole (local mailbox and relay)"]
    assert hole["ratio_to_scp"] == pytest.approx(0.4)
    assert hole["ratio_to_scp_transfer"] is None and hole["mb_per_s_transfer"] is None
    assert "phases_s" not in hole


def test_without_scp_there_is_no_ratio() -> None:
    rows = single_rows({"eft v3 (x)": [Measured(1.0, 0.5)]}, MiB)
    assert "ratio_to_scp" not in rows["eft v3 (x)"]


def _load_run(sessions: int, server_cpu: float, own_cpu: float) -> dict[str, object]:
    return {
        "clients": sessions,
        "size": MiB,
        "wall_seconds": 2.0,
        "latencies": [0.5] * sessions,
        "failures": 0,
        "errors": [],
        "server_cpu_s": server_cpu,
        "server_loop_cpu_s": server_cpu / 2,
        "server_peak_rss": 60 * MiB,
        "cpu_seconds_sessions": own_cpu,
        "cpu_seconds_total": own_cpu + 1.0,
    }


def test_server_and_load_generator_cpu_per_session_are_kept_apart() -> None:
    row = summarize_load([_load_run(1000, 4.0, 9.0), _load_run(1000, 6.0, 11.0)])
    assert row["server_cpu_ms_per_session"] == pytest.approx(5.0)
    assert row["server_loop_cpu_ms_per_session"] == pytest.approx(2.5)
    assert row["load_cpu_s"] == pytest.approx(10.0)
    assert row["load_cpu_ms_per_session"] == pytest.approx(10.0)
    assert row["load_cpu_s_total"] == pytest.approx(11.0)
    assert row["sessions_per_s"] == 500


def test_a_run_where_every_session_failed_has_no_cost_per_session() -> None:
    failed = {**_load_run(0, 1.0, 2.0), "clients": 10, "failures": 10}
    row = summarize_load([failed])
    assert math.isnan(row["server_cpu_ms_per_session"])
    assert math.isnan(row["load_cpu_ms_per_session"])


def _results(rows: dict[str, dict[str, object]], **single: object) -> dict[str, object]:
    meta = {"date": "d", "machine": "m", "workdir": "w", "runs": 1, "quick": False}
    meta["eft_backends"] = ["auto"]
    return {"meta": meta, "single": {"file_size": 1024 * MiB, "rows": rows, **single}}


def test_the_report_shows_both_instruments_and_what_was_not_measured() -> None:
    rows = single_rows(
        {
            "eft v4 (default engines: OpenSSL)": [
                Measured(
                    1.25,
                    0.9,
                    {"start_up_s": 0.2, "session_s": 0.05, "transfer_s": 0.9, "exit_s": 0.1},
                )
            ],
            BASELINE: [Measured(4.0, 3.6)],
            "magic-wormhole (local mailbox and relay)": [Measured(10.0)],
        },
        1024 * MiB,
    )
    rows["eft v4 (default engines: OpenSSL)"].update(
        server_cpu_s_per_gib=1.0, server_system_s_per_gib=0.5, server_peak_rss_mib=50.0
    )
    text = report.markdown(
        _results(rows, ssh_missing=None, wormhole_missing="wormhole_mailbox_server (pip)")
    )
    line = next(x for x in text.splitlines() if x.startswith("| eft v4"))
    assert "| 859 | 3.20 | 1,193 | 4.00 | 0.35 |" in line
    hole = next(x for x in text.splitlines() if x.startswith("| magic-wormhole"))
    # No transfer, ratio on it or time outside it; no client CPU; no server columns.
    assert hole.count("—") == 7
    assert "magic-wormhole skipped: missing wormhole_mailbox_server (pip)" in text
    assert "| eft v4 (default engines: OpenSSL) | 0.200 | 0.050 | 0.900 | 0.100 | 1.250 |" in text
    assert "3.20x (859 MB/s) by the command, 4.00x by the transfer alone" in text


def test_the_targets_say_what_the_cpu_measured_bounds() -> None:
    """One file: two cores at the CPU per GiB of both processes; many sessions: the
    server's event loop on its core, and both processes on two cores."""
    rows = single_rows(
        {"eft v4 (default engines: OpenSSL)": [Measured(1.25, 0.9)], BASELINE: [Measured(4.0)]},
        1024 * MiB,
    )
    rows["eft v4 (default engines: OpenSSL)"].update(
        client_cpu_s_per_gib=1.2, server_cpu_s_per_gib=0.8, server_peak_rss_mib=50.0
    )
    results = _results(rows)
    load = summarize_load([_load_run(1000, 4.0, 1.0)])  # 4 ms a session, 2 of its loop's
    results["concurrency"] = {"v4": {"1000": load}}
    lines = report.targets(results)
    rate = next(x for x in lines if "≥ 1100 MB/s" in x)
    # 2 / 2.0 CPU-s per GiB = 1 GiB/s = 1,074 MB/s; 859 MB/s is 80 % of it.
    assert "move at most 1074 MB/s, and the command reached 80% of it" in rate
    # 859 MB/s = 0.8 GiB/s: 1.2 CPU-s/GiB keeps 96 % of a core busy, 0.8 keeps 64 %.
    assert "the client busy 96% of a core and the server 64%" in rate
    sessions = next(x for x in lines if "≥ 500 sessions/s" in x)
    assert "its event loop's thread 2.00 ms: at most 500/s" in sessions
    assert "both processes on two cores: at most 400/s" in sessions
