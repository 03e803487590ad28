"""End to end: the dashboard's exec confirmation follows the control plane's own
``exec_confirm_above`` (here 1, not the default 50): the real dashboard, over
real SSH, against a real control plane so configured, with real agents."""

from __future__ import annotations

import pytest

from tests.conftest import FAST
from tui.app import CentralityApp
from tui.screens.dialogs import ConfirmScreen
from tui.screens.exec import ExecScreen
from tui.source import OperatorSource

from .conftest import exec_ready, screen_text, until
from .test_e2e import _marked_fleet, _run

THRESHOLD = 1


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def control_plane(home, store_url):
    from centrality_core.settings import ServerSettings, resolve_server
    from control_plane.server import ControlPlane

    assert ServerSettings().exec_confirm_above != THRESHOLD  # the point: not the default
    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST,
                                      "exec_confirm_above": THRESHOLD}))
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


async def test_the_dashboard_asks_above_the_control_planes_threshold(control_plane, agents, operator):
    await agents("e2e-t01", index=41, profile="cpu")
    await agents("e2e-t02", index=42, profile="cpu")
    source = OperatorSource()
    app = CentralityApp(source)
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            await _marked_fleet(pilot, app, {"e2e-t01", "e2e-t02"})
            await pilot.press("x")
            screen = await exec_ready(pilot)
            text = screen_text(app)
            assert "Runs on 2 machines  ·  2 marked machines" in text
            assert f"more than {THRESHOLD} machines: asks first" in text
            # Enter asks first, as the control plane would; saying no runs nothing anywhere.
            await _run(pilot, app, "echo asked", wait=False)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert f"Run echo asked on 2 machines? That is more than {THRESHOLD}." in screen_text(app)
            await pilot.press("n")
            await until(pilot, lambda: app.screen is screen, what="back on the exec screen")
            assert screen.results is None and await operator.request("audit") == []
            # Yes runs it on both.
            await _run(pilot, app, "echo asked", wait=False)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: screen.results is not None and not screen.results.running, timeout=20,
                        what="the run's end")
            app.redraw()
            await pilot.pause()
            assert "✓ done  2 machines: 2 ok" in screen_text(app)
            audit = await operator.request("audit")
            assert len(audit) == 1 and audit[0]["machines"] == ["e2e-t01", "e2e-t02"]
            # One machine is under the threshold: it runs at once.
            await pilot.press("escape", "c", "space")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExecScreen) and app.screen is not screen,
                        what="a new exec screen")
            single = app.screen
            await until(pilot, lambda: single.plan is not None and not single.plan.pending, what="the dry run")
            await _run(pilot, app, "echo once")
            assert not isinstance(app.screen, ConfirmScreen) and "✓ done  1 machine: 1 ok" in screen_text(app)
    finally:
        await source.close()
