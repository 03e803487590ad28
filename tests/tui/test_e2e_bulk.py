"""Bulk actions end to end: the real dashboard over SSH against a real control
plane and real agents: marks drain (one reason for all) and undrain every
marked machine, as `centrality machines show` then says; ctrl+d on two marked
machines in limbo declares them dead, and again removes them: their rows
leave the dashboard and `centrality machines ls` no longer lists them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST, cli
from tui.app import CentralityApp
from tui.screens.dialogs import ConfirmScreen, ReasonScreen
from tui.source import OperatorSource

from .conftest import until


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def notes(app) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def test_marks_drain_undrain_and_forget_on_a_real_control_plane(control_plane, agents, home):
    await agents("e2e-b01", index=51, profile="cpu")
    b02 = await agents("e2e-b02", index=52, profile="cpu")
    b03 = await agents("e2e-b03", index=53, profile="cpu")
    source = OperatorSource()
    app = CentralityApp(source)
    names = {"e2e-b01", "e2e-b02", "e2e-b03"}
    try:
        async with app.run_test(size=(110, 30)) as pilot:
            await until(pilot, lambda: names <= set(app.model.rows)
                        and all(app.model.rows[n].state == "live" for n in names), what="three live machines")
            app.redraw()
            await pilot.pause()
            await pilot.press("space", "space")  # e2e-b01, e2e-b02
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
            await pilot.press(*"rack swap", "enter")
            await until(pilot, lambda: app.model.rows["e2e-b01"].drained and app.model.rows["e2e-b02"].drained,
                        what="both drained, pushed by the subscription")
            assert not app.model.rows["e2e-b03"].drained
            for name in ("e2e-b01", "e2e-b02"):
                status, out, err = await cli(home, "machines", "show", name, "--json")
                assert status == 0, err
                assert json.loads(out)["drain"]["reason"] == "rack swap"  # one reason for all
            await pilot.press("u")
            await until(pilot, lambda: not app.model.rows["e2e-b01"].drained and not app.model.rows["e2e-b02"].drained,
                        what="both undrained")
            assert not control_plane.registry.records["e2e-b02"].flags.drained

            # Two agents stop: limbo; ctrl+d on both marked declares them dead.
            await b02.stop()
            await b03.stop()
            gone = ("e2e-b02", "e2e-b03")
            await until(pilot, lambda: all(app.model.rows[n].state == "limbo" for n in gone),
                        timeout=FAST["limbo_after"] + 3, what="both in limbo")
            await pilot.press("c")
            for n in gone:
                app.screen.table.select(n)
                await pilot.press("space")
            assert app.model.marked == set(gone)
            await pilot.press("ctrl+d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: all(app.model.rows[n].state == "dead" for n in gone), what="both dead")
            assert all(control_plane.registry.fleet.machines[n].state.value == "dead" for n in gone)

            # Dead: forget again; their records go, their rows leave, their names are free.
            await pilot.press("ctrl+d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert "Remove e2e-b[02-03] (2 dead)" in "".join(
                s.text for s in app.screen._compositor.render_strips())
            await pilot.press("y")
            await until(pilot, lambda: not any(n in app.model.rows for n in gone), timeout=10,
                        what="the rows gone with their records")
            await until(pilot, lambda: any("removed 2: e2e-b[02-03]" in n for n in notes(app)), what="the outcome")
            assert app.model.marked == set()  # the marks went with their machines
            status, out, err = await cli(home, "machines", "ls", "--json")
            assert status == 0, err
            assert {m["name"] for m in json.loads(out)} == {"e2e-b01"}
            assert "e2e-b01" in app.model.rows
    finally:
        await source.close()
