"""Screens lose their widgets one by one while they are popped or the app shuts down, and
the redraw timer and the screens' workers still fire meanwhile. A widget that is slow to
leave holds that window open long enough for ticks to land in it."""

from __future__ import annotations

import asyncio
import time

from textual.widgets import Static

from tui.screens.cluster import ClusterScreen

from .conftest import machine_ready, make_app, ready

SIZE = (150, 44)
LINGER = 1.2  # seconds: past a whole-second tick of the heartbeat ages


class SlowToLeave(Static):
    async def on_unmount(self) -> None:
        await asyncio.sleep(LINGER)


async def test_shutdown_while_the_redraw_timer_fires():
    # The timer ticks the screen on top: the fleet's, whose table re-syncs every real second.
    app = make_app(redraw_hz=50, monotonic=time.monotonic)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await app.screen.mount(SlowToLeave("leaving"))
        redraws = app.redraws
        await pilot.pause(0.3)
        assert app.redraws > redraws  # the timer is running when the app shuts down
    # Leaving the block shut the app down; run_test re-raises whatever a tick raised meanwhile.


async def test_a_popped_screen_ignores_late_ticks():
    app = make_app(monotonic=time.monotonic)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_machine("gpu-01")
        await machine_ready(pilot, "gpu-01")
        screen = app.screen
        await screen.mount(SlowToLeave("leaving"))
        await pilot.press("q")
        assert isinstance(app.screen, ClusterScreen) and not screen.live
        ticks = 0
        deadline = time.monotonic() + LINGER + 0.3
        while time.monotonic() < deadline:  # what a history worker finishing meanwhile does
            screen._charts_at = 0.0  # charts due: the tick would redraw them
            screen.safe_tick()
            ticks += 1
            await pilot.pause(0.01)
        assert ticks > 10 and not screen.is_attached and isinstance(app.screen, ClusterScreen)
