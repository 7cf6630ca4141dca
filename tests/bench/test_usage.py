"""The bench's CPU accounting: a total is never below its system part."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.common import CpuTimes, Usage

seconds = st.integers(min_value=0, max_value=10**6).map(lambda ticks: ticks / 100)


def test_a_total_differenced_as_a_sum_would_fall_below_its_system_part() -> None:
    # The case a fresh clone's CI met: (0.07 + 0.63) - (0.07 + 0.0) == 0.6299999999999999.
    usage = Usage.between(CpuTimes(0.07, 0.0), CpuTimes(0.07, 0.63), peak_rss=1)
    assert usage.system_seconds == 0.63
    assert usage.cpu_seconds >= usage.system_seconds


@given(seconds, seconds, seconds, seconds)
def test_the_total_is_the_sum_of_both_parts_and_never_below_the_system_part(
    user: float, system: float, more_user: float, more_system: float
) -> None:
    start = CpuTimes(user, system)
    end = CpuTimes(user + more_user, system + more_system)
    usage = Usage.between(start, end, peak_rss=7)
    assert 0 <= usage.system_seconds <= usage.cpu_seconds
    assert abs(usage.cpu_seconds - (more_user + more_system)) < 1e-6
    assert usage.peak_rss == 7
