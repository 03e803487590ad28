"""The light theme paints every cell (a dark terminal's own background never
shows through) and keeps the fleet's status text readable, on every screen,
chosen at start or switched to with Ctrl+T; at 200x50, 110x30 and 80x24."""

from __future__ import annotations

import pytest
from rich.color import Color

from tui.widgets.chrome import SummaryBar

from .conftest import machine_ready, make_app, ready, until

SIZES = [(200, 50), (110, 30), (80, 24)]


def luminance(color: Color) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = color.get_truecolor()
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: Color, b: Color) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def cells(app):
    """(x, y, text, style) of every segment the terminal would get."""
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        x = 0
        for seg in strip:
            yield x, y, seg.text, seg.style
            x += seg.cell_length


def _words(text: str) -> bool:
    """Text to read, not lines and blocks (borders, scrollbars, separators are drawn quieter)."""
    return any(not c.isspace() and not 0x2500 <= ord(c) <= 0x259F for c in text)


def bad_cells(app) -> list[tuple[int, int, str, str]]:
    """Cells without a background of their own (the terminal's own shows through, dark on a dark
    terminal), and text hard to read on its background (contrast under 3:1); chart lines aside."""
    from tui.widgets.charts import MetricChart

    from textual.screen import ModalScreen

    charts = [w.region for w in app.screen.query(MetricChart)]
    # A dialog dims the screen behind it on purpose: only the dialog itself must read well.
    box = app.screen.children[0].region if isinstance(app.screen, ModalScreen) else None
    bad = []
    for x, y, text, style in cells(app):
        if box is not None and not box.contains(x, y):
            continue
        bg = style.bgcolor if style is not None else None
        if bg is None or bg.is_default:
            bad.append((x, y, text, "unpainted"))
        elif _words(text) and not any(r.contains(x, y) for r in charts):
            fg = style.color
            if fg is None or fg.is_default:
                bad.append((x, y, text, "no colour of its own"))
            elif contrast(fg, bg) < 3.0:
                bad.append((x, y, text, f"contrast {contrast(fg, bg):.1f}"))
    return bad


async def visit(pilot, where: str) -> None:
    app = pilot.app
    if where == "events":
        await pilot.press("e")
        await until(pilot, lambda: getattr(app.screen, "loaded", False), what="the events")
    elif where == "machine":
        app.open_machine("gpu-02")
        await machine_ready(pilot, "gpu-02")
    elif where == "exec":
        await pilot.press("x")
        await until(pilot, lambda: getattr(app.screen, "plan", None) is not None, what="the exec screen")
    elif where == "help":
        await pilot.press("question_mark")
    app.redraw()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("start", ["light", "toggled"])
async def test_light_theme_paints_every_cell_of_every_screen(size, start):
    app = make_app(theme="light" if start == "light" else "dark")
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        if start == "toggled":
            await pilot.press("ctrl+t")
        assert not app.current_theme.dark
        for where in ("fleet", "events", "machine", "exec", "help"):
            if where != "fleet":
                await pilot.press("escape")
                await pilot.pause()
            await visit(pilot, where)
            bad = bad_cells(app)
            assert not bad, f"{where}: {len(bad)} unpainted or unreadable cells, first {bad[:3]}"


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_the_summary_lines_are_readable(theme):
    """`showing 18 of 18` (and every other word of the bar) at a contrast of 4.5:1 at least (WCAG AA)."""
    app = make_app(theme=theme)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot)
        bar = app.screen.query_one(SummaryBar)
        top, bottom = bar.region.y, bar.region.y + bar.region.height
        checked = []
        for x, y, text, style in cells(app):
            if top <= y < bottom and text.strip():
                assert style.color is not None and style.bgcolor is not None
                ratio = contrast(style.color, style.bgcolor)
                checked.append(text)
                assert ratio >= 4.5, f"{text!r}: contrast {ratio:.1f}"
        assert any("showing 18 of 18" in t for t in checked)
