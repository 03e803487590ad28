"""Refused registrations are recorded as events once per name, reason and state a
minute: an agent retrying through a failover, or an impostor retrying for hours,
does not fill the event log."""

from __future__ import annotations

from control_plane.registry import REFUSAL_EVENT_EVERY
from tests.control_plane.conftest import AgentLink, register


def _refusals(registry) -> list[str]:
    events = []
    registry.add_listener(lambda evs: events.extend(e.kind for e in evs if e.kind == "registration_refused"))
    return events


def _impostor(registry, name: str):
    return registry.register(name, {}, ("id", name), {}, "SHA256:someone-else", AgentLink())


def test_the_same_refusal_is_recorded_once_a_minute_and_the_rest_are_counted(registry, clock):
    register(registry, "gpu-01")
    recorded = _refusals(registry)
    for _ in range(50):
        assert _impostor(registry, "gpu-01").refusal.code == "name_in_use"
        clock.now += 1
    assert recorded == ["registration_refused"]
    assert registry.refusals_not_recorded == 49
    clock.now += REFUSAL_EVENT_EVERY
    _impostor(registry, "gpu-01")
    assert recorded == ["registration_refused"] * 2


def test_a_refusal_of_another_name_or_in_another_state_is_news(registry, clock):
    register(registry, "gpu-01")
    register(registry, "gpu-02")
    recorded = _refusals(registry)
    _impostor(registry, "gpu-01")
    _impostor(registry, "gpu-02")
    clock.now += 20  # gpu-01 silent past limbo_after: in limbo now
    registry.sweep()
    assert registry.fleet.get("gpu-01").state.value == "limbo"
    _impostor(registry, "gpu-01")
    assert recorded == ["registration_refused"] * 3
    assert registry.refusals_not_recorded == 0
