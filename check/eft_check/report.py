"""Results of checks, and how they are shown: a table for people, JSON for programs.

Each check ends in one of three statuses:

* ``pass``: what the spec says, byte for byte;
* ``deviation``: not the spec, but a variant our implementation tolerates (it works
  with us and breaks others: docs/PROTOCOL-v3.md §7);
* ``fail``: breaks us too, or is no known variant at all.

A known mistake (``rules.MISTAKES``) is named whatever the status.
"""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from .rules import MISTAKES, Rule

#: Payloads longer than this are shown as their start and their length.
HEX_LIMIT = 48


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    DEVIATION = "deviation"
    FAIL = "fail"


@dataclass(frozen=True)
class Frame:
    direction: str  # "sent" or "received", from the checker's side
    data: bytes
    request: bool  # client to server (23-byte header) or back (7-byte header)
    left_out: int = 0  # a marker standing for this many frames not kept

    def hex(self) -> str:
        """The header's fields apart, then the payload (its start, if long)."""
        if self.left_out:
            return f"… {self.left_out} frames left out …"
        fields = (16, 1, 2, 4) if self.request else (1, 2, 4)
        parts, at = [], 0
        for width in fields:
            if at < len(self.data):
                parts.append(self.data[at : at + width].hex())
            at += width
        payload = self.data[at:]
        if payload:
            shown = payload[:HEX_LIMIT].hex()
            parts.append(shown if len(payload) <= HEX_LIMIT else f"{shown}… ({len(payload)} B)")
        return " ".join(parts)


def trim(frames: list[Frame], head: int = 12, tail: int = 12) -> list[Frame]:
    """The first frames set the scene, the last ones show what went wrong."""
    if len(frames) <= head + tail + 1:
        return list(frames)
    gap = Frame("", b"", request=False, left_out=len(frames) - head - tail)
    return [*frames[:head], gap, *frames[-tail:]]


class Finding(Exception):
    """What a check found wrong; raised to end the check, or noted to let it go on."""

    def __init__(
        self,
        status: Status,
        expected: str,
        got: str,
        mistake: str | None = None,
        answer_code: int | None = None,
    ) -> None:
        super().__init__(f"{status}: expected {expected}, got {got}")
        if mistake is not None and mistake not in MISTAKES:
            raise ValueError(f"unknown mistake {mistake!r}")
        self.status = status
        self.expected = expected
        self.got = got
        self.mistake = mistake
        self.answer_code = answer_code  # the response code that was wrong, if one was


def fail(
    expected: str, got: str, mistake: str | None = None, answer_code: int | None = None
) -> Finding:
    return Finding(Status.FAIL, expected, got, mistake, answer_code)


def deviation(expected: str, got: str, mistake: str | None = None) -> Finding:
    return Finding(Status.DEVIATION, expected, got, mistake)


@dataclass
class Result:
    rule: Rule
    status: Status = Status.PASS
    expected: str = ""
    got: str = ""
    mistakes: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        """Keep the worst status; the first finding of that status explains it."""
        order = [Status.PASS, Status.DEVIATION, Status.FAIL]
        if order.index(finding.status) > order.index(self.status):
            self.status = finding.status
            self.expected, self.got = finding.expected, finding.got
        if finding.mistake and finding.mistake not in self.mistakes:
            self.mistakes.append(finding.mistake)
        self.notes.append(f"{finding.status}: expected {finding.expected}; got {finding.got}")

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.rule.id,
            "section": self.rule.section,
            "title": self.rule.title,
            "status": str(self.status),
            "expected": self.expected,
            "got": self.got,
            "mistakes": [
                {"id": m, "section": MISTAKES[m].section, "title": MISTAKES[m].title}
                for m in self.mistakes
            ],
            "notes": self.notes,
            "frames": [
                {"direction": f.direction, "hex": f.hex()} for f in self.frames if not f.left_out
            ],
        }


@dataclass
class Report:
    target: str  # what was checked: "server 127.0.0.1:1256", "client eft-client ..."
    results: list[Result] = field(default_factory=list)

    @property
    def conforms(self) -> bool:
        return all(result.status is Status.PASS for result in self.results)

    def mistakes(self) -> set[str]:
        return {m for result in self.results for m in result.mistakes}

    def as_json(self) -> dict[str, Any]:
        counts = {str(s): sum(r.status is s for r in self.results) for s in Status}
        return {
            "target": self.target,
            "conforms": self.conforms,
            "counts": counts,
            "mistakes": sorted(self.mistakes()),
            "results": [result.as_json() for result in self.results],
        }


_STYLE = {Status.PASS: "green", Status.DEVIATION: "yellow", Status.FAIL: "bold red"}


def print_json(report: Report, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up now: tests and callers may have replaced it
    json.dump(report.as_json(), out, indent=2)
    out.write("\n")


def print_table(report: Report, out: TextIO | None = None, frames: bool = True) -> None:
    """The table; below it, for each check that did not pass, what came and its frames."""
    console = Console(file=out or sys.stdout, highlight=False)
    table = Table(title=f"eft-check: {report.target}", title_justify="left")
    table.add_column("check")
    table.add_column("spec")
    table.add_column("status")
    table.add_column("what it checks / what went wrong")
    for result in report.results:
        style = _STYLE[result.status]
        text = result.rule.title
        if result.status is not Status.PASS:
            named = "; ".join(MISTAKES[m].title for m in result.mistakes)
            text = f"{named or result.got}"
        table.add_row(result.rule.id, result.rule.section, f"[{style}]{result.status}[/]", text)
    console.print(table)
    for result in report.results:
        if result.status is Status.PASS:
            continue
        console.print(f"\n[{_STYLE[result.status]}]{result.rule.id}[/] ({result.rule.section})")
        for mistake in result.mistakes:
            entry = MISTAKES[mistake]
            console.print(f"  mistake [bold]{mistake}[/] ({entry.section}): {entry.title}")
        console.print(f"  expected: {result.expected}")
        console.print(f"  got:      {result.got}")
        for note in result.notes[1:]:
            console.print(f"  also:     {note}")
        if frames:
            for frame in result.frames:
                arrow = {"sent": "->", "received": "<-"}.get(frame.direction, "  ")
                console.print(f"  {arrow} {frame.hex()}", soft_wrap=True)
    summary = ", ".join(f"{sum(r.status is s for r in report.results)} {s}" for s in Status)
    verdict = "conforms" if report.conforms else "does not conform"
    console.print(f"\n{summary}: {verdict}")
