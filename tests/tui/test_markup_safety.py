"""Agent text that looks like Rich/Textual markup reaches the dashboard as text:
a hostname or label ``[link=...]click[/link]`` is shown literally, never as a
live hyperlink or a style (the TUI output mode of the sanitising rules)."""

from __future__ import annotations

from .conftest import machine_ready, make_app, ready, scenario, screen_text

MARKUP_HOST = "[link=https://evil.example]click-me[/link]"


def _links(app) -> list[str]:
    return [seg.style.link for strip in app.screen._compositor.render_strips() for seg in strip
            if seg.style and seg.style.link]


async def test_markup_in_agent_text_is_shown_literally():
    src = scenario()
    src.machines["cpu-03"].hostname = MARKUP_HOST
    src.machines["cpu-03"].labels = {"pool": "[bold red]x[/]"}
    app = make_app(src)
    async with app.run_test(size=(220, 44)) as pilot:
        await ready(pilot)
        assert "pool=[bold red]x" in screen_text(app)
        await pilot.press("slash", *"cpu-03", "enter", "enter")  # filter to it, drill in
        await machine_ready(pilot, "cpu-03")
        text = screen_text(app)
        assert "[link=https://evil.example]click-me" in text
        assert not [link for link in _links(app) if "evil" in link]
