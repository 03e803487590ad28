"""The whole lifecycle over real SSH on 127.0.0.1, seen from the CLI (text and JSON).

live -> limbo (connection killed) -> live again as the same machine -> dead
after the threshold, and forget of a machine in limbo. Runs on SQLite and Postgres.
"""

from __future__ import annotations

import json

from tests.conftest import cli, wait_for


def _state(cp, name):
    m = cp.registry.fleet.get(name)
    return m.state.value if m else None


async def test_agent_lifecycle_seen_from_cli(control_plane, agents, home):
    cp = control_plane
    a = await agents("gpu-01")
    assert _state(cp, "gpu-01") == "live"
    first_id = cp.registry.fleet.get("gpu-01").id

    status, out, err = await cli(home, "machines", "ls")
    assert status == 0, err
    line = next(l for l in out.splitlines() if l.startswith("gpu-01"))
    assert "live" in line

    status, out, _ = await cli(home, "machines", "ls", "--json")
    rows = json.loads(out)
    assert [(r["name"], r["state"]) for r in rows] == [("gpu-01", "live")]
    assert {"name", "state", "hostname", "last_heartbeat"} <= rows[0].keys()
    assert rows[0]["hostname"] == a.agent.info.hostname

    # Kill the connection: limbo at once (no need to wait for the threshold).
    a.drop()
    await wait_for(lambda: _state(cp, "gpu-01") == "limbo", timeout=0.9, what="limbo on disconnect")
    # The agent reconnects by itself with identical specs: the same machine continues.
    await wait_for(lambda: _state(cp, "gpu-01") == "live", what="reconnect")
    assert cp.registry.fleet.get("gpu-01").id == first_id
    status, out, _ = await cli(home, "machines", "show", "gpu-01", "--json")
    shown = json.loads(out)
    assert shown["id"] == first_id
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[:3] == ["reconnected", "disconnected", "registered"]

    # Stop the agent for good: limbo, then dead after dead_after (3 s here).
    await a.stop()
    await wait_for(lambda: _state(cp, "gpu-01") == "limbo", what="limbo after stop")
    await wait_for(lambda: _state(cp, "gpu-01") == "dead", timeout=6, what="dead after threshold")
    status, out, _ = await cli(home, "machines", "ls", "--state", "dead")
    assert "dead" in next(l for l in out.splitlines() if l.startswith("gpu-01"))

    status, out, _ = await cli(home, "events", "--json", "--machine", "gpu-01")
    events = json.loads(out)
    assert [(e["kind"], e["from"], e["to"]) for e in events][:2] == [
        ("expired", "limbo", "dead"), ("disconnected", "live", "limbo")]
    status, out, _ = await cli(home, "events")
    assert "expired" in out and "limbo → dead" in out


async def test_forget_machine_in_limbo(control_plane, agents, home):
    from centrality_core.lifecycle import Thresholds

    # Long enough a dead_after that the machine cannot expire on its own meanwhile.
    control_plane.registry.fleet.thresholds = Thresholds(0.2, 1.0, 300.0)
    a = await agents("cpu-01")
    status, _, err = await cli(home, "machines", "forget", "cpu-01")
    assert status == 10 and "live" in err  # a live machine cannot be forgotten
    await a.stop()
    await wait_for(lambda: _state(control_plane, "cpu-01") == "limbo", what="limbo")
    status, out, err = await cli(home, "machines", "forget", "cpu-01")
    assert status == 0, err
    assert "now dead" in out
    status, out, _ = await cli(home, "machines", "show", "cpu-01", "--json")
    m = json.loads(out)
    assert m["state"] == "dead"
    assert m["events"][0]["kind"] == "forgotten"
    assert m["events"][0]["actor"].startswith("operator:")
    # --no-remove leaves a dead machine listed (safe to repeat); without it, a dead one goes.
    status, out, err = await cli(home, "machines", "forget", "cpu-01", "--no-remove")
    assert status == 0, err
    assert "already dead" in out and _state(control_plane, "cpu-01") == "dead"
    status, out, err = await cli(home, "machines", "forget", "cpu-01")
    assert status == 0 and "removed" in out, err
    assert "cpu-01" not in control_plane.registry


async def test_state_survives_control_plane_restart(control_plane, agents, home, store_url):
    """A restart loses no machine and creates no duplicate: agents continue their machines."""
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane
    from tests.conftest import FAST

    a = await agents("gpu-02", index=2)
    machine_id = control_plane.registry.fleet.get("gpu-02").id
    port = control_plane.address.rsplit(":", 1)[1]
    await control_plane.stop()
    await wait_for(lambda: not a.agent.state.registered, what="agent to notice")
    cp2 = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST}))
    await cp2.start()
    try:
        assert cp2.registry.fleet.get("gpu-02").state.value == "limbo"
        await wait_for(lambda: _state(cp2, "gpu-02") == "live", what="agent back after restart")
        assert cp2.registry.fleet.get("gpu-02").id == machine_id
        assert len(cp2.registry.fleet.machines) == 1
        await cp2.writer.flush()
        assert len(cp2.store.load_machines()) == 1
    finally:
        await a.stop()
        await cp2.stop()
