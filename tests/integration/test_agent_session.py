"""One connection's session, on a real agent against a real control plane: heartbeats
while nothing else is sent, a prompt and quiet
end when the agent stops, and a simulated fleet's health rounds from its shared timer."""

from __future__ import annotations

import asyncio
import logging
import time

from agent_runtime.simulate import FleetSpec, SimulatedFleet, StateDir
from tests.conftest import wait_for


async def test_an_idle_agent_heartbeats_and_stays_live(control_plane, agents):
    """No batch for a minute: only heartbeats (the control plane asks for one every 0.2 s)
    keep the machine live, well past limbo_after (1 s)."""
    ra = await agents("idle", sample_interval=30.0, batch_interval=60.0)
    before = ra.agent.state.heartbeats
    await asyncio.sleep(2.0)
    assert ra.agent.state.heartbeats - before >= 6
    assert ra.agent.state.batches_sent == 0
    assert control_plane.registry.counts()["live"] == 1
    assert ra.agent.state.connects == 1  # the same connection all along


async def test_stopping_ends_the_connection_at_once_without_a_reconnect_warning(control_plane, agents, caplog):
    ra = await agents("stopper")
    caplog.set_level(logging.WARNING, logger="centrality.agent")
    started = time.monotonic()
    ra.stop_event.set()
    await asyncio.wait_for(ra.task, 5)
    assert time.monotonic() - started < 1.0
    assert ra.agent.state.connects == 1 and not ra.agent.state.registered
    assert ra.agent.state.last_error == ""  # stopping is not a link error
    assert not [r for r in caplog.records if "reconnecting" in r.getMessage()]
    await wait_for(lambda: control_plane.registry.session("stopper") is None, what="the session gone")


async def test_a_simulated_fleet_reports_health_from_its_shared_timer_and_stops(control_plane, tmp_path):
    cp, n = control_plane, 6
    token = await cp.auth.create_token(ttl=600, uses=n, actor="test", address=cp.address)
    fleet = SimulatedFleet(FleetSpec(count=n, profile="mixed", sample_interval=0.2, batch_interval=0.5),
                           StateDir(tmp_path / "sim"), token["join"])
    stop = asyncio.Event()
    runner = asyncio.create_task(fleet.run(stop))
    try:
        await wait_for(lambda: fleet.live == n or runner.done(), timeout=30, what=f"{n} machines live")
        # the first round 0.7 s in (a sample is there), spread over the fleet; sent when connected
        await wait_for(lambda: all(r.flags.health for r in cp.registry.records.values()), timeout=10,
                       what="a health report from every machine")
        assert all(a.health.rounds == 1 for a in fleet.agents)  # the next is a minute away
        gpu = [r for r in cp.registry.records.values() if r.info.get("gpus")]
        assert {c["name"] for c in gpu[0].flags.health} >= {"memory", "gpu_count"}
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(runner, 10)
    assert time.monotonic() - started < 2.0
    assert fleet.failed == {}
    assert not any(a.state.registered for a in fleet.agents)


async def test_a_heartbeat_that_fails_unexpectedly_reconnects_instead_of_going_silent(control_plane, agents,
                                                                                      monkeypatch, caplog):
    """An error in sending a heartbeat must not leave a link open without heartbeats (the
    machine would drift to limbo): the agent logs it and connects again."""
    ra = await agents("beats", sample_interval=30.0, batch_interval=60.0)
    real_send, failed = ra.agent._send, []

    def send(writer, msg):
        if type(msg).__name__ == "Heartbeat" and not failed:
            failed.append(msg)
            raise ValueError("a bug in the heartbeat")
        return real_send(writer, msg)

    monkeypatch.setattr(ra.agent, "_send", send)
    await wait_for(lambda: failed and ra.agent.state.connects == 2 and ra.agent.state.registered,
                   timeout=15, what="a second connection after the failed heartbeat")
    assert "sending a heartbeat failed" in caplog.text
    before = ra.agent.state.heartbeats
    await asyncio.sleep(1.0)
    assert ra.agent.state.heartbeats > before  # heartbeats go on, on the new connection
    assert control_plane.registry.counts()["live"] == 1
