"""`centrality tui` and `centrality demo --no-tui` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from tests.conftest import REPO, cli_env


def run(home, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "centrality_cli", *args], env=cli_env(home), cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_tui_without_a_control_plane_says_what_to_do(home):
    r = run(home, "tui")
    assert r.returncode == 3
    assert "no control plane configured" in r.stderr and "Traceback" not in r.stderr
    r = run(home, "tui", "--context", "nope")
    assert r.returncode == 3 and "no context named 'nope'" in r.stderr


def test_tui_is_listed_and_its_help_stays_light(home):
    r = run(home, "--help")
    assert r.returncode == 0 and "tui" in r.stdout
    code = ("import sys; sys.argv = ['centrality', 'tui', '--help']\nfrom centrality_cli.main import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\nprint('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO)).stdout
    assert "--context" in out and out.strip().endswith("False")


@pytest.mark.slow
def test_demo_walkthrough_without_the_dashboard_stops_everything(home, tmp_path):
    state = tmp_path / "demo-state"
    r = run(home, "demo", "--no-tui", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "● live" in out and "◐ limbo" in out and "reconnected" in out
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"])
            if any(str(state) in part for part in (p.info["cmdline"] or ()))]
    assert left == []


def test_the_dashboard_collects_garbage_as_the_control_plane_does(home):
    """At 10,000 machines CPython's default collector pauses a key for ~0.1 s every few seconds."""
    code = (
        "import gc, json\n"
        "import tui.app, tui.source\n"
        "class Source:\n"
        "    def __init__(self, context): pass\n"
        "    async def close(self): pass\n"
        "async def run_async(self): print(json.dumps(gc.get_threshold()))\n"
        "tui.source.OperatorSource = Source\n"
        "tui.app.CentralityApp.run_async = run_async\n"
        "from centrality_cli.commands.tui import run_dashboard\n"
        "run_dashboard(None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO),
                         env=cli_env(home), check=True).stdout
    from centrality_core.runtime import GC_YOUNG_THRESHOLD

    assert json.loads(out)[0] == GC_YOUNG_THRESHOLD
