"""A machine whose agent holds its metrics back after a storm is flagged HELD in the
fleet table (its figures are from before the storm), and the flag goes once released."""

from __future__ import annotations

from .conftest import make_app, ready, scenario, screen_text, until


async def test_a_held_machine_is_flagged_until_released():
    src = scenario()
    src.machines["cpu-02"].metrics_held = True
    app = make_app(src)
    async with app.run_test(size=(200, 50)) as pilot:
        await ready(pilot)
        line = next(l for l in screen_text(app).splitlines() if "cpu-02" in l)
        assert "HELD" in line
        assert sum("HELD" in l for l in screen_text(app).splitlines()) == 1
        src.machines["cpu-02"].metrics_held = False
        src.update("cpu-02")
        await until(pilot, lambda: not app.model.rows["cpu-02"].metrics_held, what="the release pushed")
        app.redraw()
        await pilot.pause()
        assert not any("HELD" in l for l in screen_text(app).splitlines())
