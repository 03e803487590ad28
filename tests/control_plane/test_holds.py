"""Which agents hold their metrics in a storm, and when they are released (pure)."""

from __future__ import annotations

from control_plane.holds import MetricHolds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def holds(**kw):
    clock, gate = Clock(), {"in_progress": 0}
    h = MetricHolds(lambda: gate["in_progress"], clock=clock, storm_at=32, max_hold=60.0,
                    release_rate=100.0, quiet_for=2.0, **kw)
    return h, clock, gate


def test_outside_a_storm_nothing_is_held():
    h, clock, gate = holds()
    gate["in_progress"] = 31
    assert h.hold("a") == 0.0 and h.held == 0 and h.due() == []


def test_in_a_storm_agents_hold_until_it_has_been_over_for_a_while_then_go_oldest_first():
    h, clock, gate = holds()
    gate["in_progress"] = 40
    assert [h.hold(f"m{i}") for i in range(250)] == [60.0] * 250
    clock.now += 10
    assert h.due() == []  # still a storm
    gate["in_progress"] = 3
    clock.now += 1.0
    assert h.due() == []  # over for only 1 s
    clock.now += 1.0
    assert h.due() == []  # over for 2 s: the releases begin from here
    out = []
    for _ in range(10):
        clock.now += 0.2
        out += h.due()
    assert out == [f"m{i}" for i in range(len(out))]  # oldest first, none twice
    assert 190 <= len(out) <= 210  # 100 a second over 2 s: spread, not all at once
    clock.now += 1.0
    out += h.due()
    clock.now += 1.0
    out += h.due()
    assert out == [f"m{i}" for i in range(250)] and h.held == 0 and h.released == 250


def test_a_long_storm_releases_each_agent_after_max_hold():
    h, clock, gate = holds()
    gate["in_progress"] = 100
    h.hold("early")
    clock.now += 30
    h.hold("late")
    clock.now += 30.0
    assert h.due() == ["early"]  # held 60 s; the storm goes on
    clock.now += 29.9
    assert h.due() == []
    clock.now += 0.2
    assert h.due() == ["late"]


def test_an_agent_that_leaves_or_resumes_on_its_own_is_forgotten():
    h, clock, gate = holds()
    gate["in_progress"] = 100
    h.hold("a"), h.hold("b")
    h.forget("a")
    h.forget("never-held")
    gate["in_progress"] = 0
    clock.now += 3
    h.due()
    clock.now += 1
    assert h.due() == ["b"] and h.held == 0


def test_releases_do_not_bank_credit_across_an_idle_spell():
    """Quiet for an hour with nobody held, then a short storm: its agents are still spread."""
    h, clock, gate = holds()
    h.due()
    clock.now += 3600
    h.due()
    gate["in_progress"] = 50
    for i in range(300):
        h.hold(i)
    gate["in_progress"] = 0
    clock.now += 2.5
    assert len(h.due()) == 50  # half a second since the storm ended, at 100 a second
    clock.now += 0.2
    assert len(h.due()) <= 21


def test_releases_wait_while_the_store_writer_is_behind_but_deadlines_do_not():
    behind = {"yes": True}
    h, clock, gate = holds(ready=lambda: not behind["yes"])
    gate["in_progress"] = 50
    h.hold("old")
    clock.now += 30
    h.hold("new")
    gate["in_progress"] = 0
    clock.now += 3
    for _ in range(5):
        clock.now += 0.2
        assert h.due() == []  # the writer is behind: backlogs would only queue
    clock.now += 27
    assert h.due() == ["old"]  # held max_hold: released anyway
    behind["yes"] = False
    clock.now += 0.2
    assert h.due() == ["new"]


def test_the_longest_hold_is_one_an_agent_accepts():
    """The hold goes out in ``registered``: past the protocol's bound every agent would find the
    message invalid and reconnect, over and over (seen: a whole fleet of 10,000 doing it)."""
    from centrality_core import protocol as p
    from control_plane.holds import MAX_HOLD

    frame = p.encode(p.Registered(machine_id="m", name="n", heartbeat_interval=5.0, metrics_hold=MAX_HOLD))
    assert p.server_decoder.decode(frame).metrics_hold == MAX_HOLD
