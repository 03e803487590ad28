"""SVG snapshots of every screen, against the fake fleet with the clock frozen.

Regenerate after an intended change with
``.venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs (tests/tui/__snapshots__/) before committing them.
"""

from __future__ import annotations

import random

import pytest
from centrality_core.backoff import Backoff
from tests.tui.fakeshell import FakeResult

from .conftest import FROZEN, machine_ready, make_app, ready, scenario, until

SIZE = (150, 44)
FIT_SIZES = [(200, 50), (110, 30), (80, 24)]


def test_cluster(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)


@pytest.mark.parametrize("size", FIT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cluster_fits(snap_compare, size):
    """Columns share the width (labels whole at 200, none off-screen at 80), one-line summary, the footer."""
    src = scenario()
    src.machines["cpu-05"].labels = {"sim": "true", "profile": "cpu", "pool": "batch"}
    assert snap_compare(make_app(src), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", FIT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_events_fit(snap_compare, size):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("e")
        await until(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        pilot.app.redraw()

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", FIT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cluster_light_theme_fits(snap_compare, size):
    assert snap_compare(make_app(theme="light"), terminal_size=size, run_before=ready)


def test_cluster_light_theme_sorted_by_gpu(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("U")

    assert snap_compare(make_app(theme="light"), terminal_size=SIZE, run_before=run_before)


def test_cluster_filtered(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("slash")
        pilot.app.screen.query_one("#filter").cursor_blink = False
        await pilot.press(*"pool=batch")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_cluster_marked(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("space", "space", "down", "space")  # cpu-01, cpu-02, cpu-04

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_exec_results(snap_compare):
    """Every row (X): folded outputs, a failure group, a timeout, skipped machines with reasons."""
    src = scenario()
    src.exec_results["cpu-04"] = FakeResult(status="timeout", exit_code=None)

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("X")
        await until(pilot, lambda: getattr(pilot.app.screen, "plan", None) is not None)
        pilot.app.screen.query_one("#exec-command").cursor_blink = False
        await pilot.press(*"nvidia-smi -L", "enter")
        await until(pilot, lambda: pilot.app.screen.results is not None and not pilot.app.screen.results.running)
        pilot.app.redraw()

    assert snap_compare(make_app(src), terminal_size=SIZE, run_before=run_before)


def test_machine_gpu(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        pilot.app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_machine_gpu_panel_mig_and_processes(snap_compare):
    """The per-GPU panel with MIG instances under GPU 1, the processes by GPU memory, hostile names cleaned."""
    from .test_gpu_panel import mig_source

    async def run_before(pilot):
        await ready(pilot)
        pilot.app.open_machine("gpu-01")
        await machine_ready(pilot, "gpu-01")
        await until(pilot, lambda: pilot.app.screen.query_one("GpuSection").snapshot is not None)
        pilot.app.redraw()

    assert snap_compare(make_app(mig_source()), terminal_size=(150, 50), run_before=run_before)


@pytest.mark.parametrize("size", FIT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_machine_fresh_gpu(snap_compare, size):
    """Joined 2.5 minutes ago: the charts span the data there is; a row per GPU; round ticks."""
    src = scenario()
    src.machines["gpu-02"].registered_at = FROZEN - 150

    async def run_before(pilot):
        await ready(pilot)
        pilot.app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")

    assert snap_compare(make_app(src), terminal_size=size, run_before=run_before)


def test_machine_cpu_one_hour_and_nvidia_less(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        pilot.app.open_machine("cpu-01")
        await machine_ready(pilot, "cpu-01")
        await pilot.press("3")
        await until(pilot, lambda: pilot.app.screen.window == "1h" and not pilot.app.screen.history_loading)
        await machine_ready(pilot, "cpu-01")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_events(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("e")
        await until(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        pilot.app.redraw()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_connection_lost_banner(snap_compare):
    src = scenario()
    app = make_app(src, backoff=Backoff(initial=30, maximum=30, rng=random.Random(1)))

    async def run_before(pilot):
        await ready(pilot)
        src.disconnect("control plane at 127.0.0.1:8022 closed the connection")
        await until(pilot, lambda: app.feed.status.state == "lost")
        app.redraw()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
