"""Operators before agents' traffic when the event loop runs late (readpause.py), over
real SSH: while the loop is late and an operator is connected, registered agents' sockets
are not read for a moment and the operator's are; the agents' samples all land, once; with
only agents connected nothing pauses."""

from __future__ import annotations

import asyncio
import json

from agent_runtime.collectors import make_collectors
from control_plane.readpause import transport_of
from control_plane.server import LOOP_TICK
from tests.conftest import cli, wait_for
from tests.integration.test_metric_holds import _drained
from tests.integration.test_metrics import QUICK, Recording


def _reading(cp) -> tuple[set[bool], set[bool]]:
    """Whether the control plane reads its agents' and its other connections' sockets now."""
    agents, others = set(), set()
    for handler in cp.connections:
        transport = transport_of(handler.conn)
        if transport is not None:
            (agents if handler.machine is not None else others).add(transport.is_reading())
    return agents, others


async def test_a_late_loop_stops_reading_agents_while_an_operator_is_connected(
        control_plane, agents, home):
    cp = control_plane
    rec = Recording(make_collectors("cpu", index=1))
    a = await agents("busy-01", collectors=rec, **QUICK)
    await wait_for(lambda: cp.ingest.samples_stored > 0, what="samples stored")

    cp.read_priority.late = -1.0  # every look finds the loop late
    before = cp.read_priority.pauses
    await asyncio.sleep(5 * LOOP_TICK)  # several looks
    assert cp.read_priority.pauses == before  # ... but only agents are connected: no one to make room for

    from centrality_core.client import OperatorClient
    async with OperatorClient():
        # While it is connected: agents' sockets not read for a moment, the operator's still are.
        await wait_for(lambda: _reading(cp) == ({False}, {True}), what="agents' reads paused")
        status, out, _ = await cli(home, "status", "--json")  # a new connection gets through too
        s = json.loads(out)
        loop = s["event_loop"]
        assert status == 0 and loop["agent_read_pauses"] > 0 and loop["agent_reads_paused_s"] > 0
        assert any("not read for 0.2 s at a time so that operators" in w for w in s["warnings"])
        await wait_for(lambda: _reading(cp)[0] == {True}, what="agents read again")
        stored = cp.ingest.samples_stored
        await wait_for(lambda: cp.ingest.samples_stored > stored, what="the agent's batches still land")

    pauses = cp.read_priority.pauses
    await _drained(cp, a, rec, "busy-01")  # every sample stored, none twice
    # Still late, but nobody else connected (one look may have counted the operator leaving).
    assert cp.read_priority.pauses <= pauses + 1 and _reading(cp)[0] == {True}
