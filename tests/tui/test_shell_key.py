"""The shell key: ``S`` on a machine's screen or a fleet row (``s`` sorts on both), suspends the dashboard and
run ``centrality ssh NAME`` on the same context, then come back (the terminal part of the
shell is tested end to end in tests/integration/shell/test_shell_ssh.py)."""

from __future__ import annotations

import contextlib
import sys

from tui.screens.machine import MachineScreen

from .conftest import machine_ready, make_app, ready, until

SIZE = (150, 44)


def notes(app) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def _as_if_connected(app, monkeypatch, status: int) -> list:
    """A source with a context, a terminal that suspends, and a shell that exits with ``status``."""
    calls = []
    monkeypatch.setattr(type(app.source), "context", "prod", raising=False)
    monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
    monkeypatch.setattr("tui.shell.subprocess.call", lambda argv: calls.append(argv) or status)
    return calls


async def test_capital_s_on_a_machine_screen_runs_centrality_ssh_on_the_same_context(monkeypatch):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("down", "enter")
        await machine_ready(pilot, "cpu-02")
        assert isinstance(app.screen, MachineScreen)
        calls = _as_if_connected(app, monkeypatch, status=3)
        await pilot.press("S")
        await until(pilot, lambda: calls, what="the shell")
        assert calls == [[sys.executable, "-m", "centrality_cli", "--context", "prod", "ssh", "cpu-02"]]
        await until(pilot, lambda: notes(app), what="a notification")
        assert notes(app) == ["Shell: The shell on cpu-02 ended with status 3."]
        assert isinstance(app.screen, MachineScreen)  # back where it was


async def test_capital_s_on_a_fleet_row_and_a_source_without_a_control_plane():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("S")
        await until(pilot, lambda: notes(app), what="a notification")
        assert notes(app) == ["Shell: This dashboard has no control plane to open a shell through."]
