"""Exec, marks and drain in the dashboard, driven by Textual's pilot against the fake
control plane: mark rows, run a command on them, on the cursor's row, on every row
the filter shows; folded results; the confirmation above the threshold (ours and
the control plane's); Escape cancelling a run; viewers refused; drain with a
reason, then undrain."""

from __future__ import annotations

import re

from tests.tui.fake import FakeSource
from tests.tui.fakeshell import FakeResult
from tui.screens.cluster import ClusterScreen
from tui.screens.dialogs import ConfirmScreen, ReasonScreen
from tui.screens.exec import ExecScreen
from tui.screens.help import SECTIONS, HelpScreen
from tui.screens.machine import MachineScreen

from .conftest import FROZEN, exec_ready, machine_ready, make_app, ready, scenario, screen_text, until

SIZE = (150, 44)


def notes(app) -> list[str]:
    """The notifications shown (title: message)."""
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def open_exec(pilot, key: str = "x") -> ExecScreen:
    await pilot.press(key)
    return await exec_ready(pilot)


async def run(pilot, screen: ExecScreen, line: str) -> None:
    """Type ``line`` and Enter; wait for the run to end."""
    await pilot.press("ctrl+u", *line, "enter")
    await until(pilot, lambda: screen.results is not None and not screen.results.running, what="the run's end")
    pilot.app.redraw()
    await pilot.pause()


async def test_mark_rows_then_run_on_the_marked_machines_folded():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space", "space")  # cpu-01, cpu-02; the cursor moves on
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert app.model.marked == {"cpu-01", "cpu-02"}
        assert re.search(r"✓ cpu-01\s+● live", text) and re.search(r"✓ cpu-02", text)
        assert re.search(r"^\s+cpu-03", text, re.M)  # not marked
        assert "✓ 2 marked" in text
        screen = await open_exec(pilot)
        text = screen_text(app)
        assert "Runs on 2 machines  ·  2 marked machines" in text and "cpu-[01-02]" in text
        await run(pilot, screen, "echo ready")
        assert src.execs[-1]["targets"] == ["cpu-[01-02]"]
        assert src.execs[-1]["argv"] == ["sh", "-c", "echo ready"]
        text = screen_text(app)
        assert "✓ done  2 machines: 2 ok" in text and "exit status 0" in text
        assert re.search(r"── cpu-\[01-02\] \(2\)  exit 0 ──\s*\n\s*ready", text)
        # Another command on the same machines: different outputs are different groups,
        # and a hostname full of escape sequences arrives as text.
        await run(pilot, screen, "hostname")
        text = screen_text(app)
        raw = "".join(seg.text for strip in app.screen._compositor.render_strips() for seg in strip)
        assert "── cpu-01 (1)  exit 0 ──" in text and "── cpu-02 (1)  exit 0 ──" in text
        assert "cpu-02red" in text and "\x1b" not in raw and "\x07" not in raw
        await pilot.press("escape")
        assert isinstance(app.screen, ClusterScreen)
        assert app.model.marked == {"cpu-01", "cpu-02"}  # marks stay until cleared
        await pilot.press("c")
        assert app.model.marked == set()
        app.redraw()
        await pilot.pause()
        assert "✓" not in screen_text(app)


async def test_the_cursor_row_without_marks_and_every_row_the_filter_shows():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await open_exec(pilot)
        assert "Runs on 1 machine  ·  the machine under the cursor" in screen_text(app)
        assert screen.plan.targets() == ["cpu-01"]
        await pilot.press("escape")
        await pilot.press("slash", *"pool=eval", "enter")
        screen = await open_exec(pilot, "X")
        text = screen_text(app)
        assert "Runs on 1 machine of 2  ·  every machine matching the filter “pool=eval” (2)" in text
        assert "skipped 1:  gpu-05 (drained)" in text
        await run(pilot, screen, "nvidia-smi -L")
        assert src.execs[-1]["targets"] == ["gpu-[01,05]"]  # the control plane skips gpu-05 and says so
        text = screen_text(app)
        assert "── gpu-01 (1)  exit 0 ──" in text and "GPU 7: NVIDIA H100 80GB HBM3" in text
        assert "skipped 1:  gpu-05 (drained)" in text


async def test_failures_timeouts_and_skipped_machines_are_shown():
    src = scenario()
    src.exec_results["cpu-04"] = FakeResult(status="timeout", exit_code=None)
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await open_exec(pilot, "X")
        await run(pilot, screen, "nvidia-smi -L")
        text = screen_text(app)
        assert "✕ done  15 machines: 10 failed, 4 ok, 1 timed out" in text
        assert "exit status 127 (the worst of all machines)" in text
        assert "skipped 3:  cpu-07 (dead)  gpu-03 (limbo)  gpu-05 (drained)" in text
        assert "── cpu-[01-03,05-06,08-12] (10)  exit 127 ──" in text and "sh: 1: nvidia-smi: not found" in text
        assert "── gpu-[01-02,04,06] (4)  exit 0 ──" in text
        assert "── cpu-04 (1)  timed out (code 124) ──" in text
        assert text.count("skipped 3:") == 1  # the control plane skipped what the plan said
        # The control plane decides, asked again at Enter: a machine gone to limbo since the screen
        # opened (not pushed to the dashboard yet) is skipped, and the plan says so.
        await pilot.press("escape", "c", "space", "space")
        screen = await open_exec(pilot)
        src.machines["cpu-02"].state = "limbo"  # not pushed to the dashboard yet
        await run(pilot, screen, "echo hi")
        text = screen_text(app)
        assert "Runs on 1 machine of 2" in text and "skipped 1:  cpu-02 (limbo)" in text
        assert "✓ done  1 machine: 1 ok" in text


async def test_more_than_the_threshold_asks_first():
    src = FakeSource.fleet(20, 40, clock=lambda: FROZEN, replay=2)
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await open_exec(pilot, "X")
        assert "Runs on 60 machines" in screen_text(app) and "more than 50 machines: asks first" in screen_text(app)
        await pilot.press(*"true", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "Run true on 60 machines? That is more than 50." in screen_text(app)
        await pilot.press("enter")  # the focused button is Cancel: Enter alone does not run it
        await until(pilot, lambda: app.screen is screen)
        assert src.execs == [] and screen.results is None
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: screen.results is not None and not screen.results.running)
        assert src.execs[-1]["yes"] is True and src.execs[-1]["status"] == "done"
        app.redraw()
        await pilot.pause()
        assert "60 machines: 60 ok" in screen_text(app)


async def test_the_threshold_is_the_control_planes():
    src = scenario()
    src.confirm_above = 1  # a control plane configured with exec_confirm_above = 1
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space", "space")
        screen = await open_exec(pilot)
        await until(pilot, lambda: screen.plan is not None and not screen.plan.pending, what="the dry run")
        app.redraw()
        await pilot.pause()
        assert "more than 1 machines: asks first" in screen_text(app)
        await pilot.press(*"uptime", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "Run uptime on 2 machines? That is more than 1." in screen_text(app)
        assert src.execs == []  # asked before anything was sent
        await pilot.press("y")
        await until(pilot, lambda: screen.results is not None and not screen.results.running)
        assert src.execs[-1]["yes"] is True and src.execs[-1]["status"] == "done"


async def test_a_control_plane_whose_dry_run_has_no_threshold_still_gets_asked():
    """An older control plane does not say ``confirm_above`` in its dry run: the dashboard runs,
    the control plane answers ``confirm_required``, and the dashboard asks then."""
    src = scenario()
    src.confirm_above = 1
    dry_run = src.exec_plan

    async def older(targets):
        answer = await dry_run(targets)
        answer.confirm_above = None
        return answer

    src.exec_plan = older
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space", "space")
        screen = await open_exec(pilot)
        assert "asks first" not in screen_text(app)
        await pilot.press(*"uptime", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "The control plane asks: this would run on 2 machines, more than 1" in screen_text(app)
        assert src.execs[-1]["status"] == "refused"
        await pilot.press("y")
        await until(pilot, lambda: screen.results is not None and not screen.results.running)
        assert src.execs[-1]["yes"] is True and src.execs[-1]["status"] == "done"


async def test_escape_cancels_a_running_command_everywhere_and_closes():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("space", "space", "space")
        screen = await open_exec(pilot)
        await pilot.press(*"sleep 20", "enter")
        await until(pilot, lambda: screen.results is not None and screen.results.start is not None)
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "▶ running  0 of 3 done" in text and "Esc cancels it everywhere" in text
        assert "still running cpu-[01-03] (3)" in text
        await pilot.press("escape")
        assert isinstance(app.screen, ClusterScreen)
        await until(pilot, lambda: src.execs[-1]["status"] == "cancelled", what="the cancel")
        assert src.cancelled == ["cpu-01", "cpu-02", "cpu-03"]


async def test_a_viewer_is_refused_with_a_message_not_a_crash():
    src = scenario()
    src.role = "viewer"
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await open_exec(pilot)
        await run(pilot, screen, "uptime")
        text = screen_text(app)
        assert "✕ not run: 'exec' changes the fleet: viewer keys may only read" in text
        assert "Exec refused: 'exec' changes the fleet: viewer keys may only read" in notes(app)
        await pilot.press("escape")
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
        await pilot.press("d", *"PSU swap", "enter")
        await until(pilot, lambda: any(n.startswith("Cannot drain gpu-02") for n in notes(app)),
                    what="the refusal")
        assert "Cannot drain gpu-02: 'machines drain' changes the fleet: viewer keys may only read" in notes(app)
        assert not src.machines["gpu-02"].drained
        assert isinstance(app.screen, MachineScreen)


async def test_drain_with_a_reason_then_undrain_from_the_machine_screen():
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
        screen = app.screen
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
        await pilot.press("escape")  # changed its mind
        assert app.screen is screen and src.requests[-1][0] != "drain"
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen))
        await pilot.press("enter")  # a reason is required, as `centrality machines drain --reason` wants
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen) and "A reason is required" in screen_text(app)
        await pilot.press(*"PSU swap", "enter")
        await until(pilot, lambda: app.model.rows["gpu-02"].drained, what="the DRAINED flag pushed")
        assert ("drain", ("gpu-02",), "PSU swap") in src.requests
        await until(pilot, lambda: screen.info is not None and screen.info.drain, what="the drain record")
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "DRAINED" in text and "drained by operator:you at 2027-01-15 08:00:00 UTC (0.0s ago): PSU swap" in text
        assert "Drain: gpu-02 drained: PSU swap" in notes(app)
        await pilot.press("d")  # already drained: says so, asks nothing
        assert isinstance(app.screen, MachineScreen)
        await pilot.press("u")
        await until(pilot, lambda: not app.model.rows["gpu-02"].drained, what="the flag cleared")
        await until(pilot, lambda: screen.info is not None and screen.info.drain is None and not screen.info.drained)
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "DRAINED" not in text and "drained by" not in text
        assert [e.kind for e in app.model.events.items][:2] == ["undrained", "drained"]


async def test_palette_help_and_footer_know_the_new_keys():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert "space Mark" in screen_text(app) and "x Exec" in screen_text(app)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Mark / unmark the selected machine", "Clear the marks",
                "Run a command on the marked machines (or the selected one)",
                "Run a command on every machine shown (the filter's matches)"} <= titles
        cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Mark / unmark the selected machine")
        await cmd.callback()
        assert app.model.marked == {"cpu-01"}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        helped = {(title, key): what for title, rows in SECTIONS for key, what in rows}
        assert helped["Fleet", "x"] == "run a command on the marked machines, or else on the one under the cursor"
        assert helped["Machine", "d / u"] == "drain (asks why; exec skips drained machines) / undrain"
        assert helped["Exec", "Esc"].startswith("cancel a running command on every machine")
        await pilot.press("escape")
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Drain this machine (asks why)", "Undrain this machine", "Run a command on this machine"} <= titles
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExecScreen))
        assert app.screen.plan.targets() == ["gpu-02"]
        assert "Fleet  ▸  gpu-02  ▸  Exec" in screen_text(app)
