"""``S`` (fleet row or machine screen): suspend the dashboard, open ``centrality ssh NAME`` on the terminal, come back when it ends.

The shell runs as a child process (the same ``centrality`` command, same
context) on the real terminal, as k9s runs ``kubectl exec``; the dashboard
keeps its state and redraws when the shell exits. A source without a control
plane (the demo's fake fleet) has nothing to connect to and says so.
"""

from __future__ import annotations

import subprocess
import sys


def shell_argv(context: str | None, name: str) -> list[str]:
    argv = [sys.executable, "-m", "centrality_cli"]
    if context:
        argv += ["--context", context]
    return argv + ["ssh", name]


def open_shell(app, name: str | None) -> None:
    """Run the shell on ``name`` with the dashboard suspended; notify how it ended."""
    if not name:
        app.notify("No machine under the cursor.", title="Shell", severity="warning")
        return
    if not hasattr(app.source, "context"):
        app.notify("This dashboard has no control plane to open a shell through.", title="Shell",
                   severity="warning")
        return
    try:
        with app.suspend():
            sys.stdout.write(f"centrality: shell on {name}; exit it to return to the dashboard\r\n")
            sys.stdout.flush()
            status = subprocess.call(shell_argv(app.source.context, name))
    except Exception as exc:  # noqa: BLE001 - e.g. a terminal that cannot be suspended (web, tests)
        app.notify(f"Cannot open a shell here: {exc}", title="Shell", severity="error")
        return
    app.refresh()
    if status:
        app.notify(f"The shell on {name} ended with status {status}.", title="Shell",
                   severity="warning" if status < 128 else "error")
