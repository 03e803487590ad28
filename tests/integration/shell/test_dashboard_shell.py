"""The dashboard's shell key on a real terminal: ``centrality tui`` on a PTY against a real
control plane and agent; ``S`` suspends it, the machine's shell runs on the same terminal,
and the dashboard comes back when the shell exits."""

from __future__ import annotations

import asyncio


from tests.integration.shell.conftest import centrality


async def test_capital_s_opens_the_machines_shell_and_the_dashboard_comes_back(control_plane, agents, spawn):
    await agents("cpu01")
    term = spawn(centrality("tui"), rows=40, cols=140, term="xterm-256color")
    await term.expect("cpu01", timeout=30)  # the fleet table shows the machine
    await asyncio.sleep(1.0)
    term.send("S")
    await term.expect("shell on cpu01", timeout=15)  # the dashboard is suspended
    await term.expect(r"[#$>] ", timeout=15)
    term.send("echo in-the-shell-$((40+2))\r")
    await term.expect("in-the-shell-42")
    term.send("exit\r")
    await term.expect("cpu01", timeout=15)  # the dashboard redraws
    await asyncio.sleep(0.5)
    term.send("q")
    assert await term.wait(timeout=15) == 0
