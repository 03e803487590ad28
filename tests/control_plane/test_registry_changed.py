"""``Registry.changed()``: a change between asking for it and awaiting it is not missed
(``wait --live`` hung for its whole timeout with every machine live when a machine
registered in that gap)."""

from __future__ import annotations

import asyncio

from tests.control_plane.conftest import register


async def test_a_change_before_the_awaiting_task_first_runs_is_seen(registry):
    changed = asyncio.ensure_future(registry.changed())  # as `wait` does, before it looks
    register(registry, "gpu-01")  # registers before that task has taken a step
    await asyncio.wait_for(changed, 1.0)


async def test_changed_waits_for_the_next_change(registry):
    register(registry, "gpu-01")
    changed = asyncio.ensure_future(registry.changed())
    await asyncio.sleep(0.05)
    assert not changed.done()
    register(registry, "gpu-02")
    await asyncio.wait_for(changed, 1.0)
