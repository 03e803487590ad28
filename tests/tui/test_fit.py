"""Tables and bars fit the terminal (k9s/htop habits) at 200x50, 110x30 and 80x24:
no column off-screen or cut in its title, labels and actors whole when there is
room, the summary's two lines and the footer's `x Exec` and `? Help` always there."""

from __future__ import annotations

import re

import pytest

from tui.layout import KEEP_ALWAYS, Column, fit
from tui.widgets.event_table import EventTable
from tui.widgets.fleet_table import FleetTable
from tui.widgets.footer import choose

from .conftest import make_app, ready, scenario, screen_text, until

SIZES = [(200, 50), (110, 30), (80, 24)]
ids = [f"{w}x{h}" for w, h in SIZES]
LONG_LABELS = {"sim": "true", "profile": "cpu", "pool": "batch"}  # "pool=batch,profile=cpu,sim=true"


def test_fit_drops_the_least_kept_first_and_grows_to_the_content():
    cols = [Column("name", "NAME", 8), Column("labels", "LABELS", 10, keep=30, grow=50),
            Column("cpu", "CPU%", 5, keep=90), Column("spark", "HIST", 10, keep=20, grow=14, grow_rank=1)]
    wide = fit(cols, 200, {"labels": 31})
    assert [(p.id, p.width) for p in wide] == [("name", 8), ("labels", 31), ("cpu", 5), ("spark", 24)]
    assert [p.x for p in wide] == [0, 9, 41, 47]
    assert [p.id for p in fit(cols, 30, {"labels": 31})] == ["name", "labels", "cpu"]  # spark went first
    assert [p.id for p in fit(cols, 20)] == ["name", "cpu"]
    assert [p.id for p in fit(cols, 3)] == ["name"]  # kept always, even when it does not fit
    short = fit(cols, 200, {"labels": 4})
    assert short[1].width == len("LABELS")  # shorter values: down to its title, no further
    assert all(p.column.keep == KEEP_ALWAYS for p in fit(cols, 3))


def test_footer_leaves_out_the_least_useful_keys_and_keeps_help_and_exec():
    keys = [("open", "⏎", "Open"), ("app.quit", "q", "Quit"), ("filter", "/", "Filter"), ("sort_next", "s", "Sort"),
            ("sort_reverse", "r", "Reverse"), ("app.events", "e", "Events"), ("toggle_mark", "space", "Mark"),
            ("exec('selection')", "x", "Exec"), ("help", "?", "Help")]
    kept, palette, compact = choose(keys, 200, ("^p", "palette"))
    assert kept == list(range(len(keys))) and palette and not compact
    kept, palette, compact = choose(keys, 46, ("^p", "palette"))  # Mark does not fit; the shorter Events does
    assert compact and [keys[i][2] for i in kept] == ["Open", "Quit", "Filter", "Events", "Exec", "Help"]
    assert not palette
    kept, palette, compact = choose(keys, 30, ("^p", "palette"))  # the palette only with room to spare
    assert compact and [keys[i][2] for i in kept] == ["Quit", "Filter", "Exec", "Help"] and not palette
    windows = [("help", "?", "Help")] + [(f"window('{w}')", str(i), w) for i, w in enumerate(("1m", "10m"), 1)]
    assert choose(windows, 12, None)[0] == [0]  # both window keys, or neither


async def _fleet(pilot):
    await ready(pilot)
    pilot.app.redraw()
    await pilot.pause()
    return screen_text(pilot.app)


@pytest.mark.parametrize("size", SIZES, ids=ids)
async def test_the_fleet_fits(size):
    src = scenario()
    src.machines["cpu-05"].labels = dict(LONG_LABELS)
    app = make_app(src)
    width, height = size
    async with app.run_test(size=size) as pilot:
        text = await _fleet(pilot)
        lines = text.split("\n")
        table = app.screen.query_one(FleetTable)
        # Every column shown ends on screen: nothing to scroll to sideways.
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.max_scroll_x == 0
        header = next(line for line in lines if "NAME" in line and "STATE" in line)
        assert "…" not in header
        titles = {"cpu": "CPU%", "mem": "MEM%", "gpu": "GPU%", "gpu_mem": "GMEM%", "disk": "DISK%", "age": "BEAT",
                  "flags": "FLAGS"}
        for cid, title in titles.items():  # the figures stay at every size
            assert cid in table.column_ids and title in header, (cid, header)
        # The summary bar's two lines, each on one line.
        assert re.search(r"18 machines|^ 18 ", lines[1]) and "● " in lines[1]
        assert "showing 18 of 18" in lines[2] and "sorted by name ▲" in lines[2]
        footer = lines[height - 1]
        assert "x Exec" in footer and "? Help" in footer
        row = next(line for line in lines if "cpu-05" in line)
        if width >= 200:  # room for every column, and for the labels whole
            assert table.column_ids[-2:] == ["cpu_spark", "gpu_spark"]
            assert "pool=batch,profile=cpu,sim=true" in row
        if width >= 110:
            assert "labels" in table.column_ids and "pool=batch" in row
        else:
            assert "labels" not in table.column_ids  # it goes before the figures do
        # A filter and marks keep the line whole too.
        await pilot.press("space", "space", "slash", *"pool", "enter")
        app.redraw()
        await pilot.pause()
        lines = screen_text(app).split("\n")
        assert "showing 18 of 18" in lines[2] and "✓ 2 marked" in lines[2] and "pool" in lines[2]
        assert "x Exec" in lines[height - 1]


@pytest.mark.parametrize("size", SIZES, ids=ids)
async def test_the_events_screen_fits(size):
    app = make_app()
    width, height = size
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await until(pilot, lambda: getattr(app.screen, "loaded", False), what="the events")
        app.redraw()
        await pilot.pause()
        lines = screen_text(app).split("\n")
        table = app.screen.query_one(EventTable)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        header = next(line for line in lines if "EVENT" in line)
        assert "…" not in header and "REASON" in header and "BY" in header
        drained = next(line for line in lines if "gpu-05" in line and "drained" in line)
        assert "operator:alice" in drained and "NCCL timeouts" in drained  # who, whole, at every size
        assert "- → -" not in drained  # no state change: nothing shown
        assert ("TIME (UTC)" in header) == (width >= 110)  # the absolute time goes first; AGO stays
        assert "AGO" in header
        assert "? Help" in lines[height - 1] and "events of" in lines[1]
