"""The fallback supervisor (hosts without systemd), run for real with a stand-in agent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from provision import service
from provision.settings import Layout
from tests.provision.conftest import processes_under

FAKE_AGENT = """#!/bin/sh
echo "fake agent started: $*"
while :; do sleep 0.2; done
"""


def make_prefix(root: Path) -> Layout:
    layout = Layout(str(root / "prefix"))
    bin_dir = Path(layout.centrality).parent
    bin_dir.mkdir(parents=True)
    Path(layout.python).symlink_to(sys.executable)
    Path(layout.centrality).write_text(FAKE_AGENT)
    Path(layout.centrality).chmod(0o755)
    Path(layout.supervisor).parent.mkdir(parents=True)
    Path(layout.supervisor).write_text(service.supervisor_script(layout))
    Path(layout.supervisor).chmod(0o755)
    return layout


def sup(layout: Layout, action: str) -> subprocess.CompletedProcess:
    return subprocess.run([layout.supervisor, action], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def agent_pids(layout: Layout) -> list[int]:
    pids = []
    for p in processes_under(Path(layout.prefix)):
        try:
            if b"agent\0run" in Path(f"/proc/{p}/cmdline").read_bytes():
                pids.append(p)
        except OSError:
            pass
    return pids


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_start_status_restart_on_exit_and_stop(prefix_root):
    layout = make_prefix(prefix_root)
    assert sup(layout, "status").returncode == 3

    started = sup(layout, "start")
    assert started.returncode == 0, started.stderr
    pid = int(Path(layout.pidfile).read_text())
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session and process group
    assert sup(layout, "status").returncode == 0
    first = wait_until(lambda: agent_pids(layout))
    assert "already running" in sup(layout, "start").stdout  # idempotent
    assert int(Path(layout.pidfile).read_text()) == pid

    # The agent dies: the supervisor starts it again (after its restart delay).
    os.kill(first[0], 9)
    again = wait_until(lambda: [p for p in agent_pids(layout) if p not in first],
                       timeout=service.RESTART_DELAY_S + 5)
    assert again
    log = Path(layout.log).read_text()
    assert "restarting in" in log and log.count("fake agent started: agent run --config-dir") == 2

    restarted = sup(layout, "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert int(Path(layout.pidfile).read_text()) != pid

    stopped = sup(layout, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert processes_under(Path(layout.prefix)) == []
    assert not Path(layout.pidfile).exists()
    assert sup(layout, "status").returncode == 3
    assert sup(layout, "stop").returncode == 0  # stopping twice is fine


def test_a_stale_pid_file_does_not_count_as_running(prefix_root):
    layout = make_prefix(prefix_root)
    Path(layout.pidfile).parent.mkdir(parents=True)
    Path(layout.pidfile).write_text(f"{os.getpid()}\n")  # alive, but not a supervisor
    assert sup(layout, "status").returncode == 3
    assert sup(layout, "start").returncode == 0
    assert sup(layout, "stop").returncode == 0
    assert processes_under(Path(layout.prefix)) == []
