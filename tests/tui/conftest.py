"""Helpers for the dashboard's tests: a fake fleet with a frozen clock.

``scenario()`` is the fleet every pilot and snapshot test starts from: GPU
and CPU machines, one in limbo, one dead, one drained, one unhealthy, and one
whose hostname and labels carry terminal escape sequences (they must never
reach the screen).
"""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
import pytest

from centrality_core.backoff import Backoff
from centrality_core.documents import Event
from tests.tui.fake import FakeSource

FROZEN = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
EVIL_HOSTNAME = "cpu-02\x1b]0;pwned\x07\x1b[31mred\x1b[0m"


def scenario(*, replay: int = 24, gpu: int = 6, cpu: int = 12) -> FakeSource:
    src = FakeSource.fleet(gpu, cpu, clock=lambda: FROZEN, replay=replay)
    m = src.machines
    m["gpu-03"].state, m["gpu-03"].last_heartbeat = "limbo", FROZEN - 42
    m["cpu-07"].state, m["cpu-07"].last_heartbeat = "dead", FROZEN - 900
    m["gpu-05"].drained, m["gpu-05"].drain_reason = True, "NCCL timeouts"
    m["gpu-05"].drained_by, m["gpu-05"].drained_at = "operator:alice", FROZEN - 300
    m["cpu-04"].unhealthy = True
    m["cpu-02"].hostname = EVIL_HOSTNAME
    m["cpu-02"].labels = {"team": "ml\x1b[2J", "pool": "batch"}
    src.event_list[:0] = [msgspec.convert(e, Event) for e in [
        {"ts": "2027-01-15T07:59:18.000Z", "kind": "disconnected", "machine": "gpu-03", "from": "live",
         "to": "limbo", "reason": "connection closed", "actor": "system", "machine_id": "id-gpu-03"},
        {"ts": "2027-01-15T07:55:00.000Z", "kind": "drained", "machine": "gpu-05", "from": "live",
         "to": "live", "reason": "NCCL timeouts", "actor": "operator:alice", "machine_id": "id-gpu-05"},
        {"ts": "2027-01-15T07:45:00.000Z", "kind": "forgotten", "machine": "cpu-07", "from": "limbo",
         "to": "dead", "reason": "decommissioned", "actor": "bob", "machine_id": "id-cpu-07"},
    ]]
    return src


def make_app(source: FakeSource | None = None, **kwargs):
    from tui.app import CentralityApp

    kwargs.setdefault("clock", lambda: FROZEN)
    kwargs.setdefault("monotonic", lambda: 1000.0)
    kwargs.setdefault("backoff", Backoff(initial=0.05, maximum=0.1, rng=random.Random(7)))
    return CentralityApp(source or scenario(), **kwargs)


async def until(pilot, predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Pause the pilot until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


async def ready(pilot) -> None:
    """The first snapshot is in and drawn."""
    app = pilot.app
    await until(pilot, lambda: app.model.loaded and app.feed.status.state == "connected", what="the snapshot")
    await until(pilot, lambda: len(app.model.rows) and app.model.rows[next(iter(app.model.rows))].cpu_spark,
                what="replayed updates")
    await asyncio.sleep(0)
    app.redraw()
    await pilot.pause()


async def machine_ready(pilot, name: str) -> None:
    from tui.screens.machine import MachineScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, MachineScreen) and app.screen.machine_name == name,
                what=f"the machine screen of {name}")
    screen = app.screen
    await until(pilot, lambda: screen.info is not None and not screen.history_loading and screen.chart_widgets,
                what="machine info and charts")
    app.redraw()
    await pilot.pause()


async def exec_ready(pilot):
    """The exec screen is open and shows the control plane's dry run (the plan is asked for)."""
    from tui.screens.exec import ExecScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ExecScreen) and app.screen.plan is not None
                and not app.screen.plan.pending, what="the exec screen and its dry run")
    app.redraw()
    await pilot.pause()
    return app.screen


def screen_text(app) -> str:
    """What the terminal shows, as text (from the compositor, as a terminal would get it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
