"""Server-paced retries: the delay a busy control plane hands out, from its state."""

from __future__ import annotations

import random

from agent_runtime.link import retry_delay
from centrality_core import sshlink
from centrality_core.backoff import Backoff
from control_plane.admission import Admission
from control_plane.pacing import Pacer


def test_before_any_handshake_slots_follow_the_initial_rate_after_those_in_progress():
    pacer = Pacer(initial_rate=100.0)
    delays = [pacer.retry_after(now=0.0, in_progress=128) for _ in range(3)]
    # 128 in progress take 1.28 s at 100/s; then one slot every 10 ms
    assert delays == [1.29, 1.3, 1.31]


def test_slots_are_spaced_by_the_measured_handshake_rate():
    pacer = Pacer(initial_rate=1000.0)
    for i in range(100):  # 50 handshakes a second over two seconds
        pacer.handshake_done(i * 0.02)
    assert 49 < pacer.rate(2.0) < 51
    first = pacer.retry_after(2.0, in_progress=0)
    second = pacer.retry_after(2.0, in_progress=0)
    assert abs(first - 0.02) < 0.002 and abs(second - first - 0.02) < 0.002


def test_a_storm_of_n_turned_away_is_spread_over_n_over_the_rate_and_no_further():
    pacer = Pacer(initial_rate=200.0)
    delays = [pacer.retry_after(0.0, in_progress=0) for _ in range(2000)]
    assert delays == sorted(delays) and len(set(delays)) == len(delays)  # one after another, no wave
    assert abs(max(delays) - 10.0) < 0.05  # 2,000 at 200/s: ten seconds, not 30


def test_an_idle_spell_does_not_leave_old_slots_behind():
    pacer = Pacer(initial_rate=10.0)
    for _ in range(50):
        pacer.retry_after(0.0, in_progress=0)  # slots up to t=5 s
    assert pacer.retry_after(100.0, in_progress=0) == 0.1  # long after: the next slot is now + 1/rate


def test_the_rate_is_measured_over_the_window_only_and_never_below_the_minimum():
    pacer = Pacer(initial_rate=400.0, window=10.0, min_rate=5.0)
    for i in range(30):
        pacer.handshake_done(float(i))
    assert 0.9 < pacer.rate(29.0) < 1.2 or pacer.rate(29.0) == 5.0
    assert pacer.rate(29.0) == 5.0  # 1 a second measured, floored at 5
    assert pacer.rate(100.0) == 400.0  # nothing in the window: back to the initial guess


def test_past_the_cap_delays_are_spread_over_its_second_half():
    pacer = Pacer(initial_rate=5.0, min_rate=5.0, max_delay=60.0)
    delays = [pacer.retry_after(0.0, in_progress=0) for _ in range(1000)]
    assert delays[:299] == sorted(delays[:299]) and delays[298] <= 60.0  # slots, in turn
    past = delays[299:]
    assert all(30.0 <= d <= 60.0 for d in past)
    assert len(set(past)) > 600  # jittered, not a wave at the cap
    assert pacer.retry_after(0.0, in_progress=0) <= 60.0


def test_the_gate_counts_only_completed_handshakes_toward_the_rate():
    now = [0.0]
    gate = Admission(rate=0, max_handshakes=2, clock=lambda: now[0], pacer=Pacer(initial_rate=1000.0))
    for i in range(40):
        now[0] = i * 0.1
        assert gate.connect("10.0.0.1") is None
        gate.handshake_over(completed=(i % 2 == 0))  # half fail: they do not count
    assert 4.5 < gate.pacer.rate(now[0]) < 5.5
    assert gate.connect("a") is None and gate.connect("b") is None
    assert gate.connect("c") == "busy"
    # two in progress at ~5 a second take ~0.4 s; the turned-away one comes back after them
    assert 0.55 < gate.retry_after() < 0.65


def test_the_busy_reason_carries_the_delay_and_old_reasons_carry_none():
    assert sshlink.retry_after("control plane busy (many machines connecting at once); retry in 12.5s") == 12.5
    assert sshlink.retry_after("control plane busy (many machines connecting at once); retry in 3s") == 3.0
    assert sshlink.retry_after("control plane busy (many machines connecting at once); retry shortly") is None
    # as asyncssh hands it over, with the disconnect code after it
    assert sshlink.retry_after("control plane busy (many machines connecting at once); retry in 0.5s (error 12)") == 0.5
    assert sshlink.retry_after("x; retry in 99999s") == sshlink.MAX_RETRY_AFTER


def test_the_agent_waits_what_it_was_told_and_its_backoff_does_not_grow_meanwhile():
    backoff = Backoff(initial=1.0, maximum=30.0, rng=random.Random(0))
    assert [retry_delay(backoff, 7.25) for _ in range(5)] == [7.25] * 5
    assert backoff.attempt == 0
    assert 0.5 <= retry_delay(backoff, None) <= 1.0 and backoff.attempt == 1
