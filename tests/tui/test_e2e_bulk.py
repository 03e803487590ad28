"""Bulk actions end to end: the real dashboard over SSH against a real control
plane and real agents: marks drain (one reason for all) and undrain every
marked machine, as `centrality machines show` then says; ctrl+d declares a
machine in limbo dead, and forgetting a dead machine says truly what the
control plane did (the row leaves with its record, or it is still listed)."""

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
    for i in (1, 2, 3):
        last = await agents(f"e2e-b0{i}", index=50 + i, profile="cpu")
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

            # An agent stops: limbo; ctrl+d on it (marks cleared) declares it dead.
            await last.stop()
            await until(pilot, lambda: app.model.rows["e2e-b03"].state == "limbo", timeout=FAST["limbo_after"] + 3,
                        what="e2e-b03 in limbo")
            await pilot.press("c")
            app.screen.table.select("e2e-b03")
            await pilot.press("ctrl+d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: app.model.rows["e2e-b03"].state == "dead", what="e2e-b03 dead")
            assert control_plane.registry.fleet.machines["e2e-b03"].state.value == "dead"

            # Dead: forget again. The dashboard says what the control plane did.
            app.screen.table.select("e2e-b03")
            await pilot.press("ctrl+d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert "Remove e2e-b03 (1 dead)" in "".join(s.text for s in app.screen._compositor.render_strips())
            await pilot.press("y")
            await until(pilot, lambda: any("removed 1: e2e-b03" in n or "still listed e2e-b03" in n
                                           for n in notes(app)), timeout=10, what="the outcome")
            status, out, err = await cli(home, "machines", "ls", "--json")
            listed = {m["name"] for m in json.loads(out)}
            if "e2e-b03" in listed:  # a control plane that keeps dead machines' records
                assert "e2e-b03" in app.model.rows and any("still listed e2e-b03" in n for n in notes(app))
            else:
                assert "e2e-b03" not in app.model.rows and any("removed 1: e2e-b03" in n for n in notes(app))
    finally:
        await source.close()
