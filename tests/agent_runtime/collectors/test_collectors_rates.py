"""RateTracker: counters to per-second rates, never negative."""

from __future__ import annotations

import pytest

from agent_runtime.collectors.rates import RateTracker


def test_first_sight_is_none_then_rate():
    r = RateTracker()
    assert r.update("k", 100, 10.0) is None
    assert r.update("k", 300, 12.0) == pytest.approx(100.0)
    assert r.update("k", 300, 13.0) == 0.0


def test_keys_are_independent():
    r = RateTracker()
    r.update("a", 0, 0.0)
    r.update("b", 1000, 0.0)
    assert r.update("a", 10, 1.0) == 10.0
    assert r.update("b", 3000, 1.0) == 2000.0


def test_reset_gives_none_never_negative_and_rebaselines():
    r = RateTracker()
    r.update("k", 5_000, 0.0)
    assert r.update("k", 10, 1.0) is None  # counter reset: no rate for this interval
    assert r.update("k", 110, 2.0) == 100.0  # measured from the new baseline


@pytest.mark.parametrize("width", [32, 64])
def test_wrap_is_treated_as_reset(width):
    top = 2**width
    r = RateTracker()
    r.update("k", top - 100, 0.0)
    assert r.update("k", 50, 1.0) is None
    assert r.update("k", 150, 2.0) == 100.0


def test_time_not_advancing_keeps_older_baseline():
    r = RateTracker()
    r.update("k", 0, 10.0)
    assert r.update("k", 50, 10.0) is None
    assert r.update("k", 200, 12.0) == 100.0  # (200 - 0) / (12 - 10)


def test_time_going_back_gives_none():
    r = RateTracker()
    r.update("k", 0, 10.0)
    assert r.update("k", 100, 5.0) is None
    assert r.update("k", 200, 6.0) == 100.0


def test_non_finite_inputs_ignored():
    r = RateTracker()
    r.update("k", 0, 0.0)
    assert r.update("k", float("nan"), 1.0) is None
    assert r.update("k", 10, float("inf")) is None
    assert r.update("k", 10, 1.0) == 10.0


def test_random_counter_sequences_never_negative():
    import random

    rng = random.Random(1)
    r = RateTracker()
    value, ts = 0, 0.0
    for _ in range(5000):
        roll = rng.random()
        if roll < 0.05:
            value = rng.randrange(0, 1000)  # reset
        elif roll < 0.1:
            value = (value + rng.randrange(2**40)) % 2**32  # wrap
        else:
            value += rng.randrange(0, 10**6)
        ts += rng.choice((0.0, 0.5, 1.0, 1.0, -3.0))
        rate = r.update("k", value, ts)
        assert rate is None or rate >= 0


def test_forget_and_retain():
    r = RateTracker()
    for k in "abc":
        r.update(k, 1, 0.0)
    r.forget("a")
    assert "a" not in r and len(r) == 2
    r.retain({"b"})
    assert "b" in r and "c" not in r
    assert r.update("c", 5, 1.0) is None
