"""Metrics held back in a reconnect storm (protocol 1.4), over real SSH: an agent that
registers while the control plane is handshaking a storm sends no batch until it is
released, then its whole backlog, every sample once; it resumes on its own if the
release never comes; an agent older than 1.4 is never asked to hold."""

from __future__ import annotations

import json
import time

import asyncssh
import pytest

from agent_runtime import link
from agent_runtime.collectors import make_collectors
from centrality_core import protocol as p
from control_plane import history
from tests.conftest import cli, wait_for
from tests.integration.test_bad_input import RawAgent, hello
from tests.integration.test_metrics import QUICK, Recording


def _storm(cp, *, max_hold: float | None = None, quiet_for: float = 0.3) -> None:
    """Make the control plane see a storm on (any handshakes in progress: none needed)."""
    cp.holds.storm_at = 0
    if max_hold is not None:  # else the default, which the agent must accept
        cp.holds.max_hold = max_hold
    cp.holds.quiet_for = quiet_for


def _calm(cp) -> None:
    cp.holds.storm_at = 1 << 30


async def _stored_ts(cp, name: str) -> list[float]:
    await cp.writer.flush()
    out = []
    for payload in cp.store.metric_batches(cp.registry.fleet.get(name).id, 0, 1e12):
        out += history.batch_arrays(payload).ts.tolist()
    return out


async def _held_in_dashboard(operator) -> list[bool]:
    """``metrics_held`` of held-01 in the dashboard's first document (``subscribe``)."""
    stream = operator.stream("subscribe", "--interval", "0.1s").__aiter__()
    try:
        snap = await anext(stream)
    finally:
        await stream.aclose()
    return [m["metrics_held"] for m in snap["machines"] if m["name"] == "held-01"]


async def _held_flags(home) -> tuple[bool, bool, bool]:
    """``metrics_held`` of held-01 as ``machines ls``, ``machines show`` and ``top`` answer."""
    answers = [json.loads((await cli(home, *argv, "--json"))[1])
               for argv in (("machines", "ls"), ("machines", "show", "held-01"), ("top",))]
    ls, show, top = answers
    return (next(m for m in ls if m["name"] == "held-01")["metrics_held"], show["metrics_held"],
            next(m for m in top if m["name"] == "held-01")["metrics_held"])


async def _drained(cp, a, rec, name: str) -> list[float]:
    rec.paused = True  # stop taking samples; let what was taken be sent and acknowledged
    await wait_for(lambda: not a.agent.sampler.pending and not a.agent.outbox, what="outbox drained")
    stored = await _stored_ts(cp, name)
    assert len(stored) == len(set(stored)), "a sample was stored twice"
    assert sorted(stored) == sorted(rec.taken), "samples lost"
    return stored


async def test_an_agent_registered_in_a_storm_holds_its_metrics_until_the_storm_is_over(
        control_plane, agents, home, operator):
    _storm(control_plane)
    rec = Recording(make_collectors("cpu", index=1))
    a = await agents("held-01", collectors=rec, **QUICK)
    assert a.agent.state.holds == 1
    await wait_for(lambda: len(a.agent.outbox) >= 3, what="batches made while held")
    assert a.agent.state.batches_sent == 0 and control_plane.ingest.samples_stored == 0
    assert control_plane.registry.fleet.get("held-01").state == "live"  # live, heartbeating

    status, out, err = await cli(home, "status", "--json")
    s = json.loads(out)
    assert s["metrics"]["held"] == 1 and any("hold their metrics back" in w for w in s["warnings"])
    status, out, _ = await cli(home, "status")
    assert "1 machine(s) that registered in a reconnect storm" in " ".join(out.split())
    # The machine says so wherever an operator looks: its figures are from before the storm.
    assert await _held_flags(home) == (True, True, True)
    assert await _held_in_dashboard(operator) == [True]
    status, out, _ = await cli(home, "machines", "ls")
    assert "metrics-held" in next(line for line in out.splitlines() if "held-01" in line)

    _calm(control_plane)
    released = time.monotonic()
    await wait_for(lambda: control_plane.ingest.samples_stored >= len(rec.taken) - 3, what="the backlog")
    assert time.monotonic() - released < link.HOLD_SLACK  # by the control plane: its own timer is 30 min away
    assert control_plane.holds.held == 0 and control_plane.holds.released == 1
    assert await _held_flags(home) == (False, False, False)
    assert await _held_in_dashboard(operator) == [False]
    # What was made while held went out merged: a few batches, not one per batch interval.
    assert a.agent.state.batches_sent < a.agent._seq
    await _drained(control_plane, a, rec, "held-01")


async def test_a_storm_longer_than_the_hold_releases_the_agent_at_its_end(control_plane, agents):
    _storm(control_plane, max_hold=1.0)
    rec = Recording(make_collectors("cpu", index=2))
    a = await agents("held-02", collectors=rec, **QUICK)
    assert a.agent.state.holds == 1
    started = time.monotonic()
    await wait_for(lambda: a.agent.state.batches_sent > 0, what="the release")
    assert 0.8 < time.monotonic() - started < link.HOLD_SLACK  # at max_hold, the storm still on
    await _drained(control_plane, a, rec, "held-02")


async def test_an_agent_whose_release_never_comes_resumes_on_its_own(control_plane, agents, monkeypatch):
    monkeypatch.setattr(link, "HOLD_SLACK", 0.5)
    monkeypatch.setattr(control_plane.holds, "due", lambda: [])  # the release is lost
    _storm(control_plane, max_hold=0.5)
    rec = Recording(make_collectors("cpu", index=3))
    a = await agents("held-03", collectors=rec, **QUICK)
    await wait_for(lambda: a.agent.state.batches_sent > 0, what="the agent to resume by itself")
    await _drained(control_plane, a, rec, "held-03")
    assert control_plane.holds.held == 0  # its first batch told the control plane


async def test_a_reconnect_during_a_hold_replays_everything_once(control_plane, agents):
    _storm(control_plane)
    rec = Recording(make_collectors("cpu", index=4))
    a = await agents("held-04", collectors=rec, **QUICK)
    await wait_for(lambda: len(a.agent.outbox) >= 3, what="batches made while held")
    registrations = a.agent.state.registrations
    a.drop()  # the link goes while held; the storm is still on
    await wait_for(lambda: a.agent.state.registrations > registrations, what="the reconnect")
    assert a.agent.state.holds == 2 and a.agent.state.batches_sent == 0  # held again
    _calm(control_plane)
    await wait_for(lambda: a.agent.state.batches_sent > 0, what="batches")
    await _drained(control_plane, a, rec, "held-04")
    assert control_plane.holds.held == 0


@pytest.mark.parametrize("version, held", [((1, 3), False), (p.PROTOCOL_VERSION, True)])
async def test_only_an_agent_that_speaks_1_4_is_asked_to_hold(control_plane, version, held):
    _storm(control_plane, max_hold=42.0)
    key = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="agent:h", role="agent", public_key=key.export_public_key().decode(),
                                     actor="test")
    raw = await RawAgent.connect(control_plane, key)
    try:
        raw.send(hello(name="raw-hold", protocol=version))
        reg = await raw.receive()
        assert isinstance(reg, p.Registered) and reg.metrics_hold == (42.0 if held else 0.0)
        assert control_plane.holds.held == int(held)
        if held:
            _calm(control_plane)
            assert isinstance(await raw.receive(), p.MetricsResume)
    finally:
        raw.conn.close()
    await wait_for(lambda: control_plane.holds.held == 0, what="the hold forgotten with its connection")
