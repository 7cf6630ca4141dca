"""``make soak``'s arithmetic on made-up samples (the soak itself is not part of the tests)."""

from __future__ import annotations

from bench.soak import slope, summarise

MiB = 1 << 20


def test_growth_before_the_warm_up_is_left_out_and_a_copy_per_file_is_not_flat() -> None:
    flat = [
        {"t": float(t), "rss": (40 if t < 60 else 50) * MiB, "files": 10.0 * t}
        for t in range(0, 300, 5)
    ]
    report = summarise(flat, warm_up=60)
    assert report["flat"] and report["bytes_per_stored_file"] == 0
    assert report["files_stored"] == 2950 and report["rss_peak_mib"] == 50
    growing = [
        {"t": float(t), "rss": 50 * MiB + 700 * 10 * t, "files": 10.0 * t} for t in range(60)
    ]
    report = summarise(growing, warm_up=0)
    assert not report["flat"] and report["bytes_per_stored_file"] == 700


def test_slope_of_nothing_that_varies_is_zero() -> None:
    assert slope([1.0, 1.0], [3.0, 5.0]) == 0.0
    assert slope([1.0], [2.0]) == 0.0
    assert slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == 2.0


def test_a_step_of_the_record_buffer_pool_is_reported_apart() -> None:
    def sample(t: int) -> dict[str, float]:
        buffers = (2 if t < 200 else 3) * MiB  # one more record received at once
        return {
            "t": float(t),
            "rss": 40 * MiB + buffers,
            "files": 10.0 * t,
            "record_buffers": buffers,
        }

    report = summarise([sample(t) for t in range(0, 300, 5)], warm_up=150)
    assert not report["flat"] and report["bytes_per_stored_file"] > 50
    assert report["bytes_per_stored_file_less_record_buffers"] == 0
    assert report["record_buffers_after_warm_up_mib"] == 2
    assert report["record_buffers_end_mib"] == 3
