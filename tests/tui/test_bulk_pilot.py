"""Marks apply to every action (a k9s habit): drain with one reason for all,
undrain, and forget (dead machines removed from the dashboard, machines in
limbo declared dead, live ones left out), against the fake control plane,
at 200x50, 110x30 and 80x24."""

from __future__ import annotations

import pytest

from centrality_core.documents import Snapshot
from tui import bulk
from tui.screens.dialogs import ConfirmScreen, ReasonScreen

from .conftest import make_app, ready, scenario, screen_text, until

SIZES = [(200, 50), (110, 30), (80, 24)]
ids = [f"{w}x{h}" for w, h in SIZES]


def notes(app) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def test_forget_plan_removes_dead_declares_limbo_and_skips_live():
    src = scenario()
    from tui.model import FleetModel

    model = FleetModel(lambda: 0.0)
    model.apply(Snapshot(ts=0, machines=[src.row(m, 0) for m in src.machines.values()]))
    plan = bulk.forget_plan(model.rows, ["cpu-01", "gpu-03", "cpu-07", "nope"])
    assert plan.remove == ["cpu-07"] and plan.declare == ["gpu-03"] and plan.names == ["cpu-07", "gpu-03"]
    assert [n for n, _ in plan.skipped] == ["cpu-01", "nope"]
    text = "".join(t for t, _ in bulk.forget_question(plan))
    assert "Remove cpu-07 (1 dead)" in text and "Declare gpu-03 (1 in limbo) dead" in text and "Skipped" in text
    assert bulk.forget_text(plan, {"gpu-03": "no"}) == ("removed 1: cpu-07; not forgotten gpu-03: no", "error")


@pytest.mark.parametrize("size", SIZES, ids=ids)
async def test_marks_drain_with_one_reason_then_undrain(size):
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await pilot.press("space", "space", "space")  # cpu-01, cpu-02, cpu-03
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
        assert "cpu-[01-03]" in screen_text(app) and "one reason for all" in screen_text(app)
        await pilot.press(*"rack r1 PDU", "enter")
        await until(pilot, lambda: all(app.model.rows[n].drained for n in ("cpu-01", "cpu-02", "cpu-03")),
                    what="three drained rows")
        assert [r for r in src.requests if r[0] == "drain"] == [("drain", ("cpu-01", "cpu-02", "cpu-03"),
                                                                  "rack r1 PDU")]  # one request, one reason
        assert any("drained 3: cpu-[01-03] (rack r1 PDU)" in n for n in notes(app))
        app.redraw()
        await pilot.pause()
        assert screen_text(app).count("DRAINED") >= 4  # gpu-05 was already
        assert app.model.marked == {"cpu-01", "cpu-02", "cpu-03"}  # marks stay, as after exec
        await pilot.press("u")
        await until(pilot, lambda: not any(app.model.rows[n].drained for n in ("cpu-01", "cpu-02", "cpu-03")),
                    what="undrained rows")
        assert ("undrain", ("cpu-01", "cpu-02", "cpu-03")) in src.requests
        # Without marks: the machine under the cursor.
        await pilot.press("c", "home", "d")
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
        await pilot.press("enter")  # no reason: refused in the dialog
        assert isinstance(app.screen, ReasonScreen) and "A reason is required" in screen_text(app)
        await pilot.press(*"disk", "enter")
        await until(pilot, lambda: app.model.rows["cpu-01"].drained, what="cpu-01 drained")
        assert src.requests[-1] == ("drain", ("cpu-01",), "disk")


@pytest.mark.parametrize("size", SIZES, ids=ids)
async def test_forget_removes_dead_machines_from_the_dashboard(size):
    src = scenario()
    app = make_app(src)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        t = app.screen.table
        for name in ("cpu-01", "cpu-07", "gpu-03"):  # live, dead, limbo
            t.select(name)
            await pilot.press("space")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        text = screen_text(app)
        assert "Remove cpu-07 (1 dead)" in text and "gpu-03 (1 in limbo)" in text and "Skipped cpu-01" in text
        await pilot.press("n")  # nothing happens
        assert not [r for r in src.requests if r[0] == "forget"] and "cpu-07" in app.model.rows
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "cpu-07" not in app.model.rows and app.model.rows["gpu-03"].state == "dead",
                    what="cpu-07 removed and gpu-03 dead")
        assert [r for r in src.requests if r[0] == "forget"] == [("forget", ("cpu-07", "gpu-03"))]
        assert app.model.marked == {"cpu-01", "gpu-03"}  # the removed machine's mark went with it
        app.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "cpu-07" not in text and "showing 17 of 17" in text
        assert any("removed 1: cpu-07; declared dead 1: gpu-03" in n for n in notes(app))
        # Again on gpu-03, now dead: removed too. A live machine alone: nothing asked.
        await pilot.press("c")
        t.select("gpu-03")
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "gpu-03" not in app.model.rows, what="gpu-03 removed")
        t.select("cpu-01")
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("only dead or limbo machines can be forgotten" in n for n in notes(app))


async def test_a_viewer_cannot_drain_or_forget_and_is_told():
    src = scenario()
    src.role = "viewer"
    app = make_app(src)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen), what="the reason dialog")
        await pilot.press(*"x", "enter")
        await until(pilot, lambda: any("Cannot drain" in n for n in notes(app)), what="the refusal")
        app.screen.table.select("cpu-07")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: any("Cannot forget" in n and "viewer" in n for n in notes(app)),
                    what="the refusal")
        assert "cpu-07" in app.model.rows


class _ForgetClient:
    """Stands in for ``OperatorClient``: a control plane that refuses to forget some names."""

    def __init__(self, refused=()) -> None:
        self.refused, self.calls = set(refused), []

    async def forget(self, name):
        from centrality_core.documents import Forgotten
        from centrality_core.errors import Conflict

        self.calls.append(name)
        if name in self.refused:
            raise Conflict(f"machine {name!r} is live; only a machine in limbo can be forgotten")
        return Forgotten(name=name, state="dead", changed=True)


def _source(client):
    from tui.source import OperatorSource

    src = OperatorSource.__new__(OperatorSource)
    src.label, src._client = "test", client

    async def connected():
        return client

    src._connected = connected
    return src


async def test_operator_source_forgets_name_by_name_and_says_which_were_refused():
    client = _ForgetClient()
    assert await _source(client).forget(["cpu-07", "gpu-03"]) == {}
    assert client.calls == ["cpu-07", "gpu-03"]  # `machines forget NAME`, one request each
    client = _ForgetClient(refused={"cpu-01"})  # one refused: the others still go, the refusal is precise
    failed = await _source(client).forget(["cpu-01", "cpu-07"])
    assert list(failed) == ["cpu-01"] and "is live" in failed["cpu-01"]
    assert client.calls == ["cpu-01", "cpu-07"]
