"""A fleet larger than the handshakes a control plane serves at once joins, and
rejoins after a restart, at the pace the control plane sets: agents turned away
as busy come back when told, not after their own (long) backoff."""

from __future__ import annotations

import time

from centrality_core.backoff import Backoff
from tests.conftest import wait_for

N = 40
#: Each agent's own backoff: a first retry after 0.1-0.2 s (as after a lost link),
#: the next after 10-20 s. An agent that backed off twice instead of following the
#: control plane's pace would make the fleet take over 10 s.
SLOW = dict(initial=0.2, factor=100.0, maximum=30.0)


def _gate(cp, handshakes: int = 4):
    gate = cp.admission
    gate.max_handshakes = handshakes
    gate.rate = 0  # every agent here connects from 127.0.0.1: no per-address rate
    gate.max_enrolling = 0
    return gate


def _waited_at_most(fleet, what: str, seconds: float) -> None:
    for a in fleet:
        assert not a.task.done(), f"{a.name} stopped: {a.task.exception()!r}"
    slow = [a.name for a in fleet if not a.agent.state.registered]
    assert not slow, f"{what}: {len(slow)} not registered within {seconds:g}s, e.g. {slow[:3]}"


async def test_a_storm_of_agents_is_paced_by_the_control_plane(control_plane, agents, store_url):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane
    from tests.conftest import FAST

    gate = _gate(control_plane)
    token = await control_plane.auth.create_token(ttl=600, uses=N, actor="test", address=control_plane.address)
    started = time.monotonic()
    fleet = []
    for i in range(N):
        a = await agents(f"storm-{i:02d}", index=i, token=token, wait_live=False)
        a.agent.backoff = Backoff(**SLOW)  # before its first attempt: the task has not run yet
        fleet.append(a)
    await wait_for(lambda: all(a.agent.state.registered or a.task.done() for a in fleet), timeout=9.0,
                   what="the whole fleet to join")
    took = time.monotonic() - started
    _waited_at_most(fleet, "first join", 9.0)
    assert gate.refused["busy"] > 0, "the fleet never found the control plane full: no storm was tested"
    # Nobody waited much longer than the queue in front of it: the fleet took about
    # what N handshakes take at the rate the control plane measured, not a backoff.
    assert took < 2 * N / gate.pacer.rate(gate.clock()) + 2.0
    assert {a.agent.backoff.attempt for a in fleet} == {0}  # being told is not backing off

    port = control_plane.address.rsplit(":", 1)[1]
    await control_plane.stop()
    for a in fleet:  # while it is down, "connection refused": retry within 0.2 s
        a.agent.backoff = Backoff(initial=0.2, maximum=0.2)
    await wait_for(lambda: not any(a.agent.state.registered for a in fleet), what="agents to notice")
    cp2 = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST}))
    gate2 = _gate(cp2)
    await cp2.start()
    for a in fleet:  # once it is up: a second backoff would be 10-20 s unless told otherwise
        a.agent.backoff = Backoff(**SLOW)
    try:
        started = time.monotonic()
        await wait_for(lambda: all(a.agent.state.registered or a.task.done() for a in fleet), timeout=9.0,
                       what="the whole fleet back after the restart")
        took = time.monotonic() - started
        _waited_at_most(fleet, "after the restart", 9.0)
        assert gate2.refused["busy"] > 0
        assert took < 2 * N / gate2.pacer.rate(gate2.clock()) + 2.0
        assert len(cp2.registry.fleet.machines) == N  # every one continued its machine
    finally:
        for a in fleet:
            await a.stop()
        await cp2.stop()
