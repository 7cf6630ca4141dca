"""The read deadlines and the version choice: protocol rules, on a fake clock."""

from __future__ import annotations

import pytest

from eft_protocol.codes import REQUEST_HEADER
from eft_protocol.deadlines import Deadline, ReadDeadlines, TimeLimits
from eft_protocol.versions import Route, route

LIMITS = TimeLimits(idle=120, read=30, handshake=50, min_frame_rate=1000)


def test_between_frames_idle_until_the_handshake_deadline_comes_first() -> None:
    deadlines = ReadDeadlines(LIMITS, accepted_at=100)
    assert deadlines.between_frames(110, has_key=False) == Deadline("handshake", 150, 40)
    assert deadlines.between_frames(110, has_key=True) == Deadline("idle", 230, 120)
    short = ReadDeadlines(TimeLimits(idle=5, read=30, handshake=50), accepted_at=100)
    assert short.between_frames(110, has_key=False) == Deadline("idle", 115, 5)


def test_version_4_holds_an_upload_to_the_read_limit_between_records() -> None:
    deadlines = ReadDeadlines(LIMITS, accepted_at=0)
    assert deadlines.between_frames(10, has_key=True, mid_upload=True) == Deadline("read", 40, 30)
    assert deadlines.payload(12) == Deadline("read", 42, 30)


def test_a_frame_must_come_at_the_minimum_rate_as_a_whole() -> None:
    deadlines = ReadDeadlines(LIMITS, accepted_at=0)
    first = deadlines.inside_frame(0, frame_number=1, frame_size=10_000, has_key=True)
    assert first == Deadline("read", 30, 30)  # each read within 30 s
    # The whole frame: 30 s plus 10 s at 1000 B/s, counted from its first byte.
    late = deadlines.inside_frame(25, frame_number=1, frame_size=10_000, has_key=True)
    assert late == Deadline("read", 40, 15)
    fresh = deadlines.inside_frame(25, frame_number=2, frame_size=10_000, has_key=True)
    assert fresh == Deadline("read", 55, 30)


def test_on_deadline_says_which_passed_and_only_once_it_has() -> None:
    deadlines = ReadDeadlines(LIMITS, accepted_at=0)
    assert deadlines.on_deadline(0) is None
    current = deadlines.between_frames(0, has_key=True)
    assert deadlines.deadline() == current
    assert deadlines.on_deadline(119.9) is None
    assert deadlines.on_deadline(120) == current


@pytest.mark.parametrize(
    ("version", "legacy", "expected"),
    [
        (4, "allow", Route.VERSION_4),
        (4, "deny", Route.VERSION_4),
        (3, "allow", Route.VERSION_3),
        (3, "deny", Route.REFUSED),
        (71, "allow", Route.VERSION_3),  # garbage: version 3 answers it with 1607
    ],
)
def test_the_first_header_picks_the_version(version: int, legacy: str, expected: Route) -> None:
    header = REQUEST_HEADER.pack(bytes(16), version, 826, 32)
    assert route(header, legacy) is expected


def test_inside_a_frame_the_handshake_deadline_wins_when_it_comes_first() -> None:
    deadlines = ReadDeadlines(LIMITS, accepted_at=100)  # a key is due by 150
    early = deadlines.inside_frame(110, frame_number=1, frame_size=0, has_key=False)
    assert early == Deadline("read", 140, 30)  # the read limit comes before the key's
    late = deadlines.inside_frame(135, frame_number=2, frame_size=0, has_key=False)
    assert late == Deadline("handshake", 150, 15)
    assert deadlines.deadline() == late  # what on_deadline will judge against
    assert deadlines.on_deadline(149) is None
    assert deadlines.on_deadline(150) == late
    keyed = deadlines.inside_frame(135, frame_number=2, frame_size=0, has_key=True)
    assert keyed == Deadline("read", 165, 30)
    assert deadlines.deadline() == keyed
