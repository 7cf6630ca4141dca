"""The bench's CPU accounting: a total is never below its system part, and a process's
first thread (the server's event loop) is told apart from its other threads."""

from __future__ import annotations

import os
import threading
import time

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


def _spin(cpu_seconds: float) -> None:
    """Busy this thread until it has used ``cpu_seconds`` of CPU (its own clock)."""
    until = time.thread_time() + cpu_seconds
    while time.thread_time() < until:
        pass


def test_the_first_thread_s_cpu_is_its_own_not_the_other_threads() -> None:
    start = CpuTimes.of(os.getpid())
    side = threading.Thread(target=_spin, args=(0.3,))
    side.start()
    side.join()  # the first thread waits, idle
    apart = Usage.between(start, CpuTimes.of(os.getpid()), peak_rss=1)
    assert apart.cpu_seconds >= 0.28  # 10 ms ticks
    assert apart.first_thread_seconds <= 0.05

    start = CpuTimes.of(os.getpid())
    _spin(0.3)
    own = Usage.between(start, CpuTimes.of(os.getpid()), peak_rss=1)
    assert 0.28 <= own.first_thread_seconds <= own.cpu_seconds


@given(seconds, seconds, seconds)
def test_the_first_thread_s_part_is_never_above_the_total(
    user: float, more_user: float, more_first: float
) -> None:
    usage = Usage.between(
        CpuTimes(user, 0.0, 0.0), CpuTimes(user + more_user, 0.0, more_first), peak_rss=1
    )
    assert 0 <= usage.first_thread_seconds <= usage.cpu_seconds
