"""Summaries of py-spy's collapsed stacks ("raw" format): where the samples went."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if path.startswith(".") and "/" in path:
        path = path.split("/", 1)[1]
    return f"{match['func']} ({path})"


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks.append(([_short(f) for f in head.split(";") if f], int(count)))
    return stacks


def summary(path: Path, top: int = 12) -> dict[str, object]:
    """Self time (the innermost frame) and total time (anywhere on the stack), as shares."""
    stacks = read(path)
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    idle = 0
    for frames, count in stacks:
        if not frames:
            continue
        leaf = frames[-1]
        if leaf.startswith(("select (", "poll (", "run_once (", "_run_once (")) or "epoll" in leaf:
            idle += count
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "idle_share": idle / total,
        "self": [(name, count / total) for name, count in own.most_common(top)],
        "total": [(name, count / total) for name, count in inclusive.most_common(top * 2)],
    }


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        result = summary(Path(arg))
        print(arg, result["samples"], "samples; idle", f"{result['idle_share']:.0%}")
        for name, share in result["self"]:  # type: ignore[union-attr]
            print(f"  self {share:6.1%}  {name}")
        for name, share in result["total"]:  # type: ignore[union-attr]
            print(f"  total {share:6.1%}  {name}")
