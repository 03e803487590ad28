"""The dashboard driven by Textual's pilot against the fake fleet: navigation,
filter, sort, drill-in, window change, live updates, the disconnect banner,
the palette, the mouse, and sanitised agent text."""

from __future__ import annotations

import re

from centrality_core.documents import MachineLatest
from tui.screens.cluster import ClusterScreen
from tui.screens.events import EventsScreen
from tui.screens.help import HelpScreen
from tui.screens.machine import MachineScreen
from tui.widgets.chrome import Banner, FilterBar, SummaryBar
from tui.widgets.fleet_table import FleetTable

from .conftest import machine_ready, make_app, ready, scenario, screen_text, until

SIZE = (150, 44)


def table(app) -> FleetTable:
    return app.screen.query_one(FleetTable)


async def test_navigation_keys_move_the_cursor():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        t = table(app)
        assert t.selected == "cpu-01"
        await pilot.press("down", "down", "j")
        assert t.selected == "cpu-04"
        await pilot.press("up", "k")
        assert t.selected == "cpu-02"
        await pilot.press("end")
        assert t.selected == "gpu-06"
        await pilot.press("home")
        assert t.selected == "cpu-01"
        await pilot.press("pagedown")  # 18 machines fit on one page: to the last
        assert t.selected == "gpu-06"
        await pilot.press("pageup")
        assert t.selected == "cpu-01"


async def test_filter_by_label_state_and_clear():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"pool=eval")
        assert app.model.view() == ["gpu-01", "gpu-05"]
        assert isinstance(app.focused, FilterBar)
        await pilot.press("enter")  # keeps the filter, back to the table
        assert isinstance(app.focused, FleetTable) and app.model.filter_text == "pool=eval"
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "showing 2 of 18" in text and "filter: pool=eval" in text
        assert "gpu-05" in text and "cpu-01" not in text
        await pilot.press("slash", "ctrl+u", *"state:limbo")
        assert app.model.view() == ["gpu-03"]
        await pilot.press("escape")  # clears the filter
        assert app.model.filter_text == "" and len(app.model.view()) == 18
        await pilot.press("slash", *"nothing-like-this", "enter")
        app.redraw()
        await pilot.pause()
        assert "no machine matches the filter" in screen_text(app)


async def test_sort_keys_header_click_and_cursor_follows_machine():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        t = table(app)
        await pilot.press("down")  # cpu-02
        await pilot.press("C")  # CPU, busiest first
        rows = app.model.rows
        cpus = [rows[n].cpu for n in app.model.view() if rows[n].cpu is not None]
        assert cpus == sorted(cpus, reverse=True)
        assert t.selected == "cpu-02"  # the cursor stays on its machine
        await pilot.press("C")  # again: reversed
        assert app.model.sort_desc is False
        await pilot.press("T")  # state: trouble first
        assert app.model.view()[:2] == ["cpu-07", "gpu-03"]
        await pilot.press("s")  # next column
        assert app.model.sort_key == "flags"
        app.redraw()
        await pilot.pause()
        assert "FLAGS▼" in screen_text(app)
        # Clicking a column title sorts by it.
        x = t._offsets[[c.id for c in t._cols].index("disk")] + 1
        await pilot.click(FleetTable, offset=(x, 0))
        assert app.model.sort_key == "disk"
        disks = [rows[n].disk for n in app.model.view() if rows[n].disk is not None]
        assert disks == sorted(disks, reverse=True)


async def test_mouse_click_selects_then_opens():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.click(FleetTable, offset=(2, 3))  # third machine
        assert table(app).selected == "cpu-03"
        assert isinstance(app.screen, ClusterScreen)
        await pilot.click(FleetTable, offset=(2, 3))
        await until(pilot, lambda: isinstance(app.screen, MachineScreen))
        assert app.screen.machine_name == "cpu-03"


async def test_drill_in_window_change_and_back():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("end", "up", "enter")  # gpu-05
        await machine_ready(pilot, "gpu-05")
        screen = app.screen
        assert ("metrics", "gpu-05", "10m", "raw") in src.requests
        assert {"cpu", "cores", "gpu_util", "gpu_mem", "net"} <= set(screen.chart_widgets)
        text = screen_text(app)
        assert "GPU utilisation % (8 GPUs)" in text and "DRAINED" in text
        # Who drained it, when and why come from `machines show`.
        assert "drained by operator:alice at 2027-01-15 07:55:00 UTC (5m ago): NCCL timeouts" in text
        await pilot.press("3")
        await until(pilot, lambda: ("metrics", "gpu-05", "1h", "1m") in src.requests and not screen.history_loading)
        assert screen.window == "1h" and screen.series.window_s == 3600
        await pilot.press("1")
        await until(pilot, lambda: ("metrics", "gpu-05", "1m", "raw") in src.requests and not screen.history_loading)
        await machine_ready(pilot, "gpu-05")
        assert "-1m" in screen_text(app)
        assert len(screen.series) == 61
        # Live values are appended to the charts as they are pushed.
        src.clock = lambda: 1_800_000_003.0
        src.push_machine("gpu-05")
        await until(pilot, lambda: screen.series.last_ts == 1_800_000_003.0)
        # The nvidia-smi screen arrived with the live stream.
        assert "NVIDIA-SMI" in screen.smi_text
        await pilot.press("n")
        await pilot.press("q")
        assert isinstance(app.screen, ClusterScreen)
        assert table(app).selected == "gpu-05"


async def test_live_updates_change_rows_counts_and_events():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        src.set_state("cpu-05", "limbo")
        await until(pilot, lambda: app.model.rows["cpu-05"].state == "limbo")
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert re.search(r"cpu-05\s+◐ limbo", text)
        assert "◐ limbo 2" in text and "● live 15" in text
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EventsScreen) and app.screen.loaded)
        app.redraw()
        await pilot.pause()
        first_row = screen_text(app).splitlines()[3]
        assert "cpu-05" in first_row and "disconnected" in first_row
        await pilot.press("slash", *"forgotten", "enter")
        app.redraw()
        await pilot.pause()
        assert "1 events" in screen_text(app)
        await pilot.press("enter")  # open the event's machine
        await until(pilot, lambda: isinstance(app.screen, MachineScreen) and app.screen.machine_name == "cpu-07")
        src.add_machine(type(src.machines["cpu-01"])("new-01", "cpu", 77, {"pool": "new"}, 1_800_000_000.0))
        await pilot.press("q", "escape", "escape")
        assert isinstance(app.screen, ClusterScreen)
        await until(pilot, lambda: "new-01" in app.model.rows)
        src.remove_machine("new-01")
        await until(pilot, lambda: "new-01" not in app.model.rows)


async def test_disconnect_banner_then_reconnect():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        banner = app.screen.query_one(Banner)
        assert not banner.display
        src.disconnect("control plane unreachable")
        await until(pilot, lambda: app.feed.status.attempt >= 2)
        app.redraw()
        await pilot.pause()
        assert banner.display
        text = screen_text(app)
        assert "Connection to fake (in memory) lost: control plane unreachable" in text
        assert "gpu-01" in text  # what was known stays on screen
        await pilot.press("down")  # keys still work while disconnected
        assert table(app).selected == "cpu-02"
        src.machines["gpu-01"].state = "limbo"
        src.reconnect()
        await until(pilot, lambda: app.feed.status.state == "connected")
        app.redraw()
        await pilot.pause()
        assert not banner.display
        assert app.model.rows["gpu-01"].state == "limbo"


async def test_help_palette_and_theme():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, ClusterScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Filter", "Sort by CPU %", "Reverse the sort order", "Events", "Open the selected row",
                "Help", "Light / dark theme", "Quit"} <= titles
        cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Sort by GPU util %")
        await cmd.callback()
        assert app.model.sort_key == "gpu"
        # The palette also opens machines by name.
        from tui.app import MachineCommands

        provider = MachineCommands(app.screen)
        hits = [h async for h in provider.search("gpu-04")]
        assert hits and hits[0].text == "Open machine gpu-04"
        await pilot.press("ctrl+t")
        assert app.theme == "centrality-light"
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Chart window: 1 hour", "Show the nvidia-smi screen", "This machine's events"} <= titles


async def test_agent_text_never_reaches_the_screen_raw():
    src = scenario()
    evil = "GPU ok\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b6n done"
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"team=ml", "enter")  # matches the label with escapes
        assert app.model.view() == ["cpu-02"]
        await pilot.press("enter")
        await machine_ready(pilot, "cpu-02")
        screen = app.screen
        screen._on_live(MachineLatest(name="cpu-02", ts=1_800_000_001.0, text={"nvidia_smi": evil}))
        app.redraw()
        await pilot.pause()
        text = screen_text(app) + "".join(seg.text for strip in app.screen._compositor.render_strips()
                                          for seg in strip)
        assert "cpu-02red" in text  # the hostname, with its escapes gone
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        await pilot.press("n")
        await pilot.pause(0.1)
        assert "GPU okred  done" in screen_text(app)  # 8-bit CSI "\x9b6n" is removed whole


async def test_summary_bar_counts():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        text = str(app.screen.query_one(SummaryBar).render())
        for part in ("18 machines", "● live 16", "◐ limbo 1", "✕ dead 1", "drained 1", "unhealthy 1",
                     "GPU machines 6", "(48 GPUs)", "CPU machines 12", "fleet GPU", "CPU"):
            assert part in text


async def test_a_redraw_tick_while_the_app_closes_is_harmless():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
    app.redraw()  # the screens are gone; the interval timer may still fire once
