"""The second instrument: how long the transfer alone took, by each tool's own account.

The bench times every client command from its start to its exit (start-up, log-in and
key exchange included). Beside it, each tool says how long the bytes took:

- eft: the client's ``--json`` events carry wall-clock times; ``file_started`` to
  ``file_verified`` is the file alone (until the server's verdict: stored and committed),
  and the events before it split the rest (start-up until ``connected``, log-in and key
  exchange until ``file_started``, exit after ``file_verified``).
- scp and sftp: OpenSSH's progress meter (shown on a terminal only, so the bench gives
  them a pseudo-terminal) prints, once the file is done, its true average rate since the
  file's first byte, in units of 1024 with one decimal.
- rsync: ``--progress`` prints the same for the file, from a millisecond clock.

Pure parsing, no processes: the unit tests feed it recorded outputs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_UNITS = {"": 1, "k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def eft_events(stdout: str) -> list[dict[str, Any]]:
    """The client's ``--json`` events, in order; lines that are not JSON objects skipped."""
    events = []
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record and "time" in record:
            events.append(record)
    return events


@dataclass(frozen=True)
class EftPhases:
    """One eft client run cut at its events (seconds, wall clock)."""

    start_up: float  # process start until connected (interpreter, imports, TCP connect)
    session: float  # connected until the file's first byte (log-in, key exchange, 1601)
    transfer: float  # the file alone: first byte until the server's verdict
    exit: float  # after the verdict until the process ended

    def as_dict(self) -> dict[str, float]:
        return {
            "start_up_s": self.start_up,
            "session_s": self.session,
            "transfer_s": self.transfer,
            "exit_s": self.exit,
        }


def eft_phases(events: list[dict[str, Any]], launched: float, exited: float) -> EftPhases:
    """Cut one run at ``connected``, the last ``file_started`` and ``file_verified``.

    ``launched`` and ``exited`` are the bench's ``time.time()`` around the command, the
    clock the client's events are stamped with. A run retried inside (a new
    ``file_started`` after a mismatch) counts from its last attempt's start.
    """
    times: dict[str, float] = {}
    for event in events:
        kind = event["event"]
        if kind == "connected" and "connected" in times:
            continue  # the first connection is the one start-up ends at
        times[kind] = float(event["time"])
    missing = [k for k in ("connected", "file_started", "file_verified") if k not in times]
    if missing:
        raise ValueError(f"the client's events lack {', '.join(missing)}")
    return EftPhases(
        start_up=times["connected"] - launched,
        session=times["file_started"] - times["connected"],
        transfer=times["file_verified"] - times["file_started"],
        exit=exited - times["file_verified"],
    )


# "source.bin   100% 1024MB 312.4MB/s   00:03" (OpenSSH progressmeter.c, scp and sftp)
_METER = re.compile(r"\b100%\s+\S+\s+(?P<rate>\d+(?:\.\d+)?)(?P<unit>[KMGT]?)B/s")
# "  1,073,741,824 100%  312.45MB/s    0:00:03 (xfr#1, to-chk=0/1)" (rsync --progress)
_RSYNC = re.compile(r"\b100%\s+(?P<rate>\d+(?:\.\d+)?)(?P<unit>[kKMGT]?)B/s")


def _last_rate(output: str, pattern: re.Pattern[str]) -> float | None:
    """Bytes per second in the last 100% line of a progress display (lines end in \\r
    while it runs, \\n at the end)."""
    rate = None
    for piece in re.split(r"[\r\n]+", output):
        match = pattern.search(piece)
        if match:
            rate = float(match["rate"]) * _UNITS[match["unit"]]
    return rate


def meter_seconds(output: str, size: int) -> float | None:
    """The file's transfer alone by OpenSSH's progress meter (scp, sftp): its final rate
    is the file's size over the seconds since its first byte. None when there is none."""
    rate = _last_rate(output, _METER)
    return size / rate if rate else None


def rsync_seconds(output: str, size: int) -> float | None:
    """The file's transfer alone by ``rsync --progress``'s last line. None when absent."""
    rate = _last_rate(output, _RSYNC)
    return size / rate if rate else None
