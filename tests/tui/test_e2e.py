"""End to end: the real dashboard, over real SSH, against a real control plane
with simulated agents (8-GPU and CPU profiles, sampling every 0.1 s)."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import FAST
from tui.app import CentralityApp
from tui.screens.cluster import ClusterScreen
from tui.screens.machine import MachineScreen
from tui.source import OperatorSource

from .conftest import screen_text, until


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


async def test_dashboard_against_a_real_control_plane(control_plane, agents):
    await agents("e2e-gpu", index=11, profile="gpu8", sample_interval=0.1, batch_interval=0.2)
    cpu = await agents("e2e-cpu", index=12, profile="cpu", sample_interval=0.1, batch_interval=0.2)
    source = OperatorSource()  # the `local` context the control plane wrote
    app = CentralityApp(source)
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            model = app.model
            # The fleet shows up, pushed by the subscription, with figures.
            await until(pilot, lambda: {"e2e-gpu", "e2e-cpu"} <= set(model.rows)
                        and all(model.rows[n].cpu is not None for n in ("e2e-gpu", "e2e-cpu")),
                        what="both machines with figures")
            assert model.rows["e2e-gpu"].gpu_count == 8 and model.rows["e2e-gpu"].gpu is not None
            await until(pilot, lambda: len(model.rows["e2e-gpu"].cpu_spark) >= 3, what="sparkline history")
            app.redraw()
            await pilot.pause()
            text = screen_text(app)
            assert re.search(r"e2e-gpu\s+● live\s+\S*\s*GPU×8", text)
            assert "2 machines" in text and "● live 2" in text

            # Drill in: charts of the GPU machine move as samples are pushed.
            await pilot.press("slash", *"e2e-gpu", "enter", "enter")
            await until(pilot, lambda: isinstance(app.screen, MachineScreen), what="the machine screen")
            screen = app.screen
            await until(pilot, lambda: screen.info is not None and screen.chart_widgets and screen.smi_text,
                        what="info, charts and nvidia-smi")
            assert {"cpu", "cores", "gpu_util", "gpu_mem", "gpu_temp", "gpu_power", "fs", "net"} <= set(
                screen.chart_widgets)
            assert "NVIDIA H100" in screen.smi_text
            assert source._machine_flags == ["--no-fleet"]  # the control plane sends only this machine
            first_ts, draws = screen.series.last_ts, screen.chart_widgets["gpu_util"].draws
            await until(pilot, lambda: screen.series.last_ts > first_ts + 0.5 and screen.live_docs >= 3,
                        what="live samples")
            await until(pilot, lambda: screen.chart_widgets["gpu_util"].draws > draws, what="a chart redraw")
            assert screen.series.latest("gpu[7].util_percent") is not None
            await pilot.press("1")  # a one-minute window: history from the store
            await until(pilot, lambda: screen.window == "1m" and not screen.history_loading and len(screen.series) > 5,
                        what="one-minute history")
            await pilot.press("q")
            assert isinstance(app.screen, ClusterScreen)
            await pilot.press("escape")  # clear the filter

            # Kill an agent: its row turns to limbo within the limbo threshold.
            killed = time.monotonic()
            await cpu.stop()
            await until(pilot, lambda: model.rows["e2e-cpu"].state == "limbo", timeout=FAST["limbo_after"] + 2,
                        what="the killed agent's machine in limbo")
            assert time.monotonic() - killed <= FAST["limbo_after"] + 0.5
            app.redraw()
            await pilot.pause()
            text = screen_text(app)
            assert re.search(r"e2e-cpu\s+◐ limbo", text)
            assert "◐ limbo 1" in text
            assert any(ev.machine == "e2e-cpu" and ev.to_state == "limbo" for ev in model.events.items)
    finally:
        await source.close()
