"""The exec prompt: empty after a run, earlier lines on Up and Down (a shell's
habit), so a new line never runs glued to the previous one."""

from __future__ import annotations

import pytest

from tui.history import History
from tui.screens.exec import ExecScreen

from .conftest import make_app, ready, scenario, screen_text, until

SIZES = [(200, 50), (110, 30), (80, 24)]


def test_history_walks_back_and_forward_and_keeps_the_draft():
    h = History(limit=3)
    assert h.older("typed") == "typed"  # nothing yet: Up changes nothing
    for line in ("uptime", "nvidia-smi -L | head -2", "nvidia-smi -L | head -2", "hostname"):
        h.add(line)
    assert h.lines == ["uptime", "nvidia-smi -L | head -2", "hostname"]  # a repeat kept once
    assert h.older("df -h") == "hostname"
    assert h.older("hostname") == "nvidia-smi -L | head -2"
    assert h.older("x") == "uptime"
    assert h.older("x") == "uptime"  # the oldest stays
    assert h.newer("x") == "nvidia-smi -L | head -2"
    assert h.newer("x") == "hostname"
    assert h.newer("x") == "df -h"  # past the newest: the draft comes back
    assert h.newer("df -h") == "df -h"
    h.add("a")
    assert h.lines == ["nvidia-smi -L | head -2", "hostname", "a"]  # limit 3


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_prompt_is_empty_after_a_run_and_up_brings_lines_back(size):
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.press("space", "space")  # cpu-01, cpu-02
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExecScreen), what="the exec screen")
        screen = app.screen
        prompt = screen.query_one("#exec-command")

        async def typed_then_enter(*keys: str) -> None:
            await pilot.press(*keys, "enter")
            await until(pilot, lambda: screen.results is not None and not screen.results.running,
                        what="the run's end")
            app.redraw()
            await pilot.pause()

        await typed_then_enter(*"nvidia-smi -L | head -2")
        assert prompt.value == ""  # cleared for the next line
        # What was reported: typing a new line and Enter ran it glued to the old one.
        await typed_then_enter(*"hostname")
        assert [e["argv"][2] for e in src.execs] == ["nvidia-smi -L | head -2", "hostname"]
        assert prompt.value == ""
        assert "$ hostname" in screen_text(app)
        await pilot.press(*"echo dra")  # a draft, then back through the history
        await pilot.press("up")
        assert prompt.value == "hostname"
        await pilot.press("up")
        assert prompt.value == "nvidia-smi -L | head -2"
        await pilot.press("down", "down")
        assert prompt.value == "echo dra"
        await pilot.press("up", "enter")  # Up then Enter runs the line again, as a shell does
        await until(pilot, lambda: len(src.execs) == 3 and not screen.results.running, what="the rerun")
        assert src.execs[-1]["argv"][2] == "hostname" and prompt.value == ""
        # The history outlives the screen: the next exec screen has it too.
        await pilot.press("escape")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExecScreen) and app.screen is not screen,
                    what="a new exec screen")
        await pilot.pause()
        await pilot.press("up")
        assert app.screen.query_one("#exec-command").value == "hostname"
