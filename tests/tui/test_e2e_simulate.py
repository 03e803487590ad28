"""The demo's exec, end to end: a real ``centrality simulate`` run (mixed
profile: CPU machines and an 8-GPU one) against a real control plane; commands
sent from the CLI and from the dashboard reach the simulated machines over
SSH, run through the agent's executor, and answer as the simulated machines
(their hostname, their GPUs), not as the host they run on."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys

import pytest
from textual.widgets import Input

from tests.conftest import REPO, cli, cli_env
from tui.app import CentralityApp
from tui.execrun import outcome_text
from tui.source import OperatorSource

from .conftest import exec_ready, screen_text, until


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def simulated(control_plane, home, tmp_path):
    """``centrality simulate --agents 4 --profile mixed``: sim-00001..3 are CPU machines, sim-00004 has 8 GPUs."""
    status, join, err = await cli(home, "token", "create", "--uses", "4")
    assert status == 0, err
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "simulate", "--agents", "4", "--profile", "mixed",
        "--ramp", "0.5", "--state-dir", str(tmp_path / "sim"), "--join", join.strip(),
        env=cli_env(home), cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        status, out, err = await cli(home, "wait", "--live", "4", "--timeout", "60s", "--json", timeout=90)
        assert status == 0, err
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.communicate(), 30)


async def exec_json(home, *args: str) -> dict:
    status, out, err = await cli(home, "exec", "--json", *args)
    doc = json.loads(out)
    return {r["machine"]: r for r in doc["results"]} | {"_status": status}


async def test_simulated_machines_answer_as_themselves(control_plane, home, simulated):
    host = socket.gethostname()
    r = await exec_json(home, "sim-[00001-00004]", "--", "hostname")
    assert r["_status"] == 0
    assert {n: r[n]["stdout"] for n in ("sim-00001", "sim-00002", "sim-00003", "sim-00004")} == {
        "sim-00001": "cpu-00001\n", "sim-00002": "cpu-00002\n", "sim-00003": "cpu-00003\n",
        "sim-00004": "gpu-00004\n"}
    assert all(r[n]["stdout"] != f"{host}\n" for n in r if n != "_status")
    # The hostnames are the ones the machines registered with (machine info).
    assert control_plane.registry.records["sim-00004"].info["hostname"] == "gpu-00004"
    # The GPU machine has nvidia-smi, piped as in the report; the CPU machines do not.
    r = await exec_json(home, "sim-00004", "--", "sh", "-c", "nvidia-smi -L | head -2")
    assert r["_status"] == 0
    lines = r["sim-00004"]["stdout"].splitlines()
    assert len(lines) == 2 and all(line.startswith(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-")
                                   for i, line in enumerate(lines))
    r = await exec_json(home, "sim-00004", "--", "nvidia-smi")
    assert "NVIDIA-SMI" in r["sim-00004"]["stdout"] and r["sim-00004"]["stdout"].count("H100") == 8
    r = await exec_json(home, "sim-00001", "--", "nvidia-smi", "-L")
    assert r["sim-00001"]["code"] == 127 and "nvidia-smi: not found" in r["sim-00001"]["stderr"]


async def test_the_dashboard_runs_a_line_on_simulated_machines(control_plane, home, simulated):
    source = OperatorSource()
    app = CentralityApp(source)
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            await until(pilot, lambda: len(app.model.rows) == 4
                        and all(m.state == "live" for m in app.model.rows.values()), timeout=20,
                        what="four simulated machines live")
            await pilot.press("X")  # every machine shown
            screen = await exec_ready(pilot)
            text = screen_text(app)
            assert "simulated" in text and "run on the simulator's host" in text  # said before anything runs
            screen.query_one(Input).value = "hostname; nvidia-smi -L | head -1"
            await pilot.press("enter")
            # Past the command's own 30 s timeout: a machine that hangs ends as "timed out", named below.
            await until(pilot, lambda: screen.results is not None and not screen.results.running, timeout=45,
                        what="the run's end")
            r = screen.results
            assert r.error == "" and r.counts == {"ok": 4}, (
                r.error, {n: outcome_text(e) for n, e in r.exits.items()}, r.still_running())
            app.redraw()
            await pilot.pause()
            text = screen_text(app)
            for n in (1, 2, 3):
                assert f"cpu-0000{n}" in text
            assert "gpu-00004" in text and "GPU 0: NVIDIA H100 80GB HBM3" in text
            assert socket.gethostname() not in text.split("Exec")[-1]
    finally:
        await source.close()
