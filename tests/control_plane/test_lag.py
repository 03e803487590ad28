"""The sample-to-stored delay window (lag.py) against the exact percentiles."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.lag import BINS, GROWTH, LOW_S, LagWindow, bin_of, bin_value


def exact(delays, q):
    ordered = sorted(delays)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def close(got, want):
    if want < LOW_S:
        return got == 0.0
    return abs(got - want) <= want * (GROWTH - 1) + 0.0005  # a bin's half width, and rounding to ms


delays = st.floats(min_value=-5.0, max_value=3 * 86400.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(delays, min_size=1, max_size=300), min_size=1, max_size=12))
def test_percentiles_are_within_a_bin_of_the_exact_ones(batches):
    w = LagWindow()
    stored_at = 1_000_000.5
    every = []
    for batch in batches:
        w.add(stored_at, [stored_at - d for d in batch])
        every += batch
    p50, p99 = w.percentiles(stored_at, 30, (0.5, 0.99))
    assert close(p50, exact(every, 0.5)), (p50, exact(every, 0.5))
    assert close(p99, exact(every, 0.99)), (p99, exact(every, 0.99))


def test_only_the_window_counts_and_old_seconds_are_dropped():
    w = LagWindow(seconds=60)
    w.add(100.0, [99.0] * 10)        # 1 s late, stored at t=100
    w.add(200.0, [190.0] * 10)       # 10 s late, stored at t=200
    assert w.percentiles(210.0, 30, (0.5,)) == [round(bin_value(bin_of(10.0)), 3)]
    assert w.percentiles(400.0, 30, (0.5,)) == [None]
    assert len(w._slots) == 1  # t=100 left the ring when t=200 came


def test_nothing_stored_is_none_and_a_clock_ahead_is_zero():
    w = LagWindow()
    assert w.percentiles(50.0, 30, (0.5, 0.99)) == [None, None]
    w.add(50.0, [52.0, 51.0])  # the agent's clock runs 1-2 s ahead
    assert w.percentiles(50.0, 30, (0.5, 0.99)) == [0.0, 0.0]


def test_huge_delays_land_in_the_last_bin_and_bins_grow_by_two_percent():
    assert bin_of(10 * 365 * 86400.0) == BINS - 1
    edges = [bin_value(i) for i in range(1, 50)]
    ratios = np.diff(np.log(edges))
    assert np.allclose(ratios, np.log(GROWTH))


def test_memory_does_not_grow_with_samples():
    w = LagWindow(seconds=60)
    for second in range(1000):
        w.add(float(second), np.linspace(second - 600, second, 500).tolist())
    assert len(w._slots) == 60
