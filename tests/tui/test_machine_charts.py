"""The machine screen's charts: the window fits the data there is (a fresh
machine fills its charts), several GPUs are one readable row each (not eight
lines on top of each other), Y ticks are round numbers; at 200x50, 110x30 and
80x24."""

from __future__ import annotations

import re

import pytest

from tui.series import Series, charts, data_span, nice_axis, tick_text
from tui.widgets.charts import MetricChart
from tui.widgets.strips import StripChart, blocks, columns

from .conftest import FROZEN, machine_ready, make_app, ready, scenario, screen_text

SIZES = [(200, 50), (110, 30), (80, 24)]


def test_nice_axis_and_ticks():
    assert nice_axis(100) == (100, [0, 25, 50, 75, 100])
    assert nice_axis(805) == (1000, [0, 250, 500, 750, 1000])
    assert nice_axis(79.6) == (80, [0, 20, 40, 60, 80])
    assert nice_axis(0.4)[1] == [0, 0.1, 0.2, 0.3, 0.4]
    assert nice_axis(0) == (1, [0, 0.25, 0.5, 0.75, 1])
    assert [tick_text(t) for t in (0.0, 25.0, 2.5, 0.25, 100.0)] == ["0", "25", "2.5", "0.25", "100"]


def test_the_span_is_the_data_there_is_within_the_window():
    s = Series(600)
    assert data_span(s, 1000.0) == 600  # nothing yet: the window
    for t in range(850, 1001, 5):
        s.add(float(t), {"cpu.percent": 50.0})
    assert data_span(s, 1000.0) == pytest.approx(153)  # 2.5 minutes of data in a 10-minute window
    assert data_span(Series(60), 1000.0) == 60
    one = Series(600)
    one.add(995.0, {"cpu.percent": 1.0})
    assert data_span(one, 1000.0) == 60  # never less than a minute
    (cpu,) = [c for c in charts(s, 1000.0, span=data_span(s, 1000.0)) if c.id == "cpu"]
    xs = cpu.lines[0].xs
    assert -153 <= min(xs) < -140 and max(xs) < 0 and len(xs) == 31  # from the left edge of the span to now


def test_gpus_are_strips_and_a_single_gpu_a_line():
    s = Series(600)
    for t in range(0, 600, 10):
        s.add(float(t), {f"gpu[{g}].util_percent": 50.0 for g in range(8)} | {"gpu[0].temp_c": 60.0})
    by_id = {c.id: c for c in charts(s, 600.0)}
    assert by_id["gpu_util"].kind == "strips" and len(by_id["gpu_util"].lines) == 8
    assert by_id["gpu_temp"].kind == "lines"  # one GPU reporting: a line chart
    assert columns([-590, -5], [10.0, 90.0], 600, 4) == [10.0, None, None, 90.0]
    assert blocks([0.0, 50.0, 100.0, None], 100) == "▁▄█ "


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_fresh_gpu_machine_fills_its_charts_with_round_ticks_and_a_row_per_gpu(size):
    src = scenario()
    src.machines["gpu-02"].registered_at = FROZEN - 150  # joined two and a half minutes ago
    app = make_app(src)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
        screen = app.screen
        assert screen.window == "10m" and 150 <= screen.span <= 160
        widgets = screen.chart_widgets
        for cid in ("gpu_util", "gpu_mem", "gpu_temp", "gpu_power"):
            assert isinstance(widgets[cid], StripChart) and len(widgets[cid].chart.lines) == 8
        assert isinstance(widgets["cpu"], MetricChart) and widgets["cpu"].window_s == screen.span
        text = screen_text(app)
        assert "only 2m of data, shown in full" in text
        page = screen.query_one("#page")  # the charts, below the per-GPU panel
        page.scroll_to_widget(widgets["cpu"], animate=False, top=True)
        await pilot.pause()
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        # Round Y ticks on the line charts on screen, never plotext's 83.3 / 66.7 / 16.7.
        assert re.search(r"100┤", text) and re.search(r" 50┤", text)
        assert not re.search(r"\b(83\.3|66\.7|16\.7|33\.3)┤", text)
        # The x axis ends at the data: about -2.5m, not -10m.
        assert "-10m" not in text and re.search(r"-2\.5m|-2m", text)
        # Every GPU its own row, with its latest value, where the GPU charts are on screen.
        page.scroll_to_widget(widgets["gpu_util"], animate=False, top=True)
        await pilot.pause()
        text = screen_text(app)
        rows = re.findall(r"gpu([0-7]) [ ▁▂▃▄▅▆▇█]+ +\d+%", text)
        assert sorted(set(rows)) == [str(g) for g in range(8)], text


async def test_a_machine_with_the_whole_window_of_data_shows_the_window():
    app = make_app()
    async with app.run_test(size=(150, 44)) as pilot:
        await ready(pilot)
        app.open_machine("cpu-01")
        await machine_ready(pilot, "cpu-01")
        assert app.screen.span == 600
        text = screen_text(app)
        assert "-10m" in text and "of data, shown in full" not in text
