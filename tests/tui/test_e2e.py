"""End to end: the real dashboard, over real SSH, against a real control plane
with simulated agents (8-GPU and CPU profiles, sampling every 0.1 s): the
fleet, the machine charts, limbo; a command run from the exec screen on real
agents (folded output, Escape killing the remote processes); drain and
undrain from the machine screen, seen by the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from textual.widgets import Input

from centrality_core.documents import Skipped
from tests.conftest import FAST, cli
from tests.conftest import alive, read_pids
from tui.app import CentralityApp
from tui.screens.cluster import ClusterScreen
from tui.screens.dialogs import ReasonScreen
from tui.screens.exec import ExecScreen
from tui.screens.machine import MachineScreen
from tui.source import OperatorSource

from .conftest import exec_ready, screen_text, until


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
            assert source._no_fleet  # the control plane sends only this machine
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
            # The bar counts what the table shows (under load the other agent, 1 s from limbo
            # itself, may be there too for a moment).
            await until(pilot, lambda: f"◐ limbo {sum(m.state == 'limbo' for m in model.rows.values())}"
                        in screen_text(app), timeout=3, what="the bar's limbo count")
            assert any(ev.machine == "e2e-cpu" and ev.to_state == "limbo" for ev in model.events.items)
    finally:
        await source.close()


async def _marked_fleet(pilot, app, names: set[str]) -> None:
    """Wait for ``names`` to be live, then mark them all (they are the first rows)."""
    await until(pilot, lambda: names <= set(app.model.rows)
                and all(app.model.rows[n].state == "live" for n in names), what="the machines live")
    app.redraw()
    await pilot.pause()
    await pilot.press(*["space"] * len(names))
    assert app.model.marked == names


async def _run(pilot, app, line: str, *, wait: bool = True) -> ExecScreen:
    screen = app.screen
    assert isinstance(screen, ExecScreen)
    screen.query_one(Input).value = line  # typed as is: $, > and & are not key names
    await pilot.press("enter")
    if wait:
        await until(pilot, lambda: screen.results is not None and not screen.results.running, timeout=20,
                    what="the run's end")
        app.redraw()
        await pilot.pause()
    return screen


async def test_exec_from_the_dashboard_on_real_agents(control_plane, agents, operator, tmp_path):
    await agents("e2e-x01", index=31, profile="cpu")
    await agents("e2e-x02", index=32, profile="cpu")
    source = OperatorSource()
    app = CentralityApp(source)
    pids = tmp_path / "pids"
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            await _marked_fleet(pilot, app, {"e2e-x01", "e2e-x02"})
            await pilot.press("x")
            await exec_ready(pilot)
            assert "Runs on 2 machines  ·  2 marked machines" in screen_text(app)

            # The same output on both machines is folded; each machine's own name is not.
            await _run(pilot, app, 'echo "hello from the fleet"; echo "I am $CENTRALITY_MACHINE" >&2')
            text = screen_text(app)
            assert "✓ done  2 machines: 2 ok" in text
            assert re.search(r"── e2e-x01 \(1\)  exit 0 ──\s*\n\s*stdout\s*\n\s*hello from the fleet\s*\n"
                             r"\s*stderr\s*\n\s*I am e2e-x01", text)
            assert "I am e2e-x02" in text
            await _run(pilot, app, "echo same everywhere; exit 3")
            text = screen_text(app)
            assert "── e2e-x[01-02] (2)  exit 3 ──" in text and "same everywhere" in text
            assert "exit status 3 (the worst of all machines)" in text
            audit = await operator.request("audit")
            assert audit[0]["argv"] == ["sh", "-c", "echo same everywhere; exit 3"]
            assert audit[0]["machines"] == ["e2e-x01", "e2e-x02"] and audit[0]["exit_code"] == 3

            # Escape cancels a running command: the remote process groups are killed.
            await _run(pilot, app, f"echo $$ >> {pids}; sleep 60 & echo $! >> {pids}; wait", wait=False)
            await until(pilot, lambda: len(read_pids(pids)) == 4, what="both machines running it")
            started = read_pids(pids)
            assert all(alive(p) for p in started)
            await pilot.press("escape")
            assert isinstance(app.screen, ClusterScreen)
            await until(pilot, lambda: not any(alive(p) for p in started), timeout=10,
                        what="the remote processes killed")
            deadline = time.monotonic() + 10
            while (audit := await operator.request("audit"))[0]["status"] == "running":
                assert time.monotonic() < deadline, "the audit row was never completed"
                await pilot.pause(0.05)
            assert audit[0]["status"] == "cancelled" and audit[0]["counts"] == {"cancelled": 2}
    finally:
        for p in read_pids(pids):
            if alive(p):
                os.kill(p, signal.SIGKILL)
        await source.close()


async def test_drain_and_undrain_from_the_machine_screen(control_plane, agents, home):
    await agents("e2e-d01", index=41, profile="cpu")
    await agents("e2e-d02", index=42, profile="cpu")
    source = OperatorSource()
    app = CentralityApp(source)
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            await _marked_fleet(pilot, app, {"e2e-d01", "e2e-d02"})
            app.open_machine("e2e-d02")
            await until(pilot, lambda: isinstance(app.screen, MachineScreen) and app.screen.info is not None,
                        what="the machine screen")
            screen = app.screen
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
            await pilot.press(*"PSU swap", "enter")
            await until(pilot, lambda: app.model.rows["e2e-d02"].drained, what="DRAINED pushed by the subscription")
            status, out, err = await cli(home, "machines", "show", "e2e-d02", "--json")
            assert status == 0, err
            shown = json.loads(out)
            assert shown["drained"] and shown["drain"]["reason"] == "PSU swap"
            assert shown["drain"]["by"].startswith("operator:")
            await until(pilot, lambda: screen.info is not None and screen.info.drain, what="the drain record on screen")
            app.redraw()
            await pilot.pause()
            text = screen_text(app)
            assert "DRAINED" in text and re.search(r"drained by operator:\S+ at .* ago\): PSU swap", text)

            # Exec now skips it, as the control plane says.
            await pilot.press("q", "x")
            await exec_ready(pilot)
            assert "Runs on 1 machine of 2" in screen_text(app) and "skipped 1:  e2e-d02 (drained)" in screen_text(app)
            await _run(pilot, app, "hostname")
            assert app.screen.results.start.skipped == [Skipped(machine="e2e-d02", reason="drained")]
            assert "✓ done  1 machine: 1 ok" in screen_text(app)

            await pilot.press("escape")
            app.open_machine("e2e-d02")
            await until(pilot, lambda: isinstance(app.screen, MachineScreen) and app.screen.info is not None)
            await pilot.press("u")
            await until(pilot, lambda: not app.model.rows["e2e-d02"].drained, what="the flag cleared")
            assert not control_plane.registry.records["e2e-d02"].flags.drained
            status, out, err = await cli(home, "machines", "show", "e2e-d02", "--json")
            assert status == 0 and json.loads(out)["drain"] is None
            # the flag's events, newest first (a reconnect of the busy agent may come between)
            kinds = [e.kind for e in await source.events("e2e-d02") if e.kind in ("drained", "undrained")]
            assert kinds[:2] == ["undrained", "drained"]
    finally:
        await source.close()
