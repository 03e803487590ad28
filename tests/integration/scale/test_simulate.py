"""A small scale run in the suite: 300 simulated machines, each a real SSH
connection and a real agent, against a real control plane. Correctness, not
speed: all live, no duplicates, every sample taken stored exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest

from agent_runtime.simulate import FleetSpec, SimulatedFleet, StateDir
from tests.conftest import FAST, REPO, cli, cli_env, wait_for

N = 300


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def control_plane(home, store_url):
    """The suite's fast control plane, set up as the docs say for many simulated machines on
    one host: every one connects from 127.0.0.1, so no per-source connection rate or enrolling
    limit (those have their own tests in tests/integration/test_security_ssh.py). With them,
    most of these machines are turned away and wait out their reconnect backoff."""
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST,
                                      "connection_rate_per_source": 0, "max_enrolling_per_source": 0}))
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_300_simulated_machines_all_live_none_lost(control_plane, tmp_path):
    cp = control_plane
    token = await cp.auth.create_token(ttl=600, uses=N, actor="test", address=cp.address)
    spec = FleetSpec(count=N, profile="mixed", ramp=6.0, sample_interval=0.5, batch_interval=1.0)
    fleet = SimulatedFleet(spec, StateDir(tmp_path / "sim"), token["join"])
    stop = asyncio.Event()
    runner = asyncio.create_task(fleet.run(stop))
    try:
        await wait_for(lambda: fleet.live == N or runner.done(), timeout=180, interval=0.5,
                       what=f"{N} simulated machines live")
        assert cp.registry.counts()["live"] == N
        await asyncio.sleep(3)  # a few batches each
        for a in fleet.agents:  # stop sampling, let every batch be stored and acknowledged
            a.sampler.sample = lambda now: None
        await wait_for(lambda: all(a.outbox.samples == 0 and a.sampler.pending == 0 for a in fleet.agents),
                       timeout=30, what="every batch acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(runner, 60)
    totals = fleet.totals()
    assert fleet.failed == {}
    assert totals["samples_dropped"] == 0 and totals["samples_pending"] == 0
    assert totals["samples_taken"] == totals["samples_acked"] > N * 4
    assert cp.ingest.samples_stored == totals["samples_taken"]  # exactly once
    assert cp.ingest.duplicates == 0
    assert len(cp.registry.fleet.machines) == N
    gpu_nodes = [n for n, r in cp.registry.records.items() if r.info.get("gpus")]
    assert len(gpu_nodes) == N // 4


@pytest.mark.slow
@pytest.mark.parametrize("cap", [3, 1000])
async def test_a_simulator_has_no_more_handshakes_in_flight_than_its_cap(control_plane, tmp_path, cap):
    """40 machines started at the same instant: the control plane never sees more than
    ``handshakes`` of this simulator's handshakes at once, and every machine joins. With
    no real cap (1,000) it sees more: the count below measures what the cap changes."""
    cp, n = control_plane, 40
    token = await cp.auth.create_token(ttl=600, uses=n, actor="test", address=cp.address)
    fleet = SimulatedFleet(FleetSpec(count=n, profile="cpu", ramp=0.0, handshakes=cap),
                           StateDir(tmp_path / "sim"), token["join"])
    seen = []

    async def watch():
        while True:
            seen.append(cp.admission.handshakes)
            await asyncio.sleep(0)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch())
    runner = asyncio.create_task(fleet.run(stop))
    try:
        await wait_for(lambda: fleet.live == n or runner.done(), timeout=60, what=f"{n} machines live")
    finally:
        watcher.cancel()
        stop.set()
        await asyncio.wait_for(runner, 30)
    assert fleet.failed == {}
    assert len(cp.registry.fleet.machines) == n
    if cap < n:
        assert max(seen) == cap
    else:
        assert max(seen) > 3


@pytest.mark.slow
async def test_simulate_command_joins_stops_cleanly_and_rejoins_without_token(control_plane, home, tmp_path):
    status, join, err = await cli(home, "token", "create", "--uses", "20")
    assert status == 0, err
    args = [sys.executable, "-m", "centrality_cli", "simulate", "--agents", "20", "--profile", "gpu8",
            "--processes", "2", "--ramp", "1", "--state-dir", str(tmp_path / "state"), "--name-prefix", "t-"]
    started = []

    async def simulate(*extra: str):
        # Its own process group: a failing test must not leave the worker processes running.
        proc = await asyncio.create_subprocess_exec(*args, *extra, env=cli_env(home), cwd=str(REPO),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
        started.append(proc)
        return proc

    try:
        proc = await simulate("--join", join.strip())
        status, out, err = await cli(home, "wait", "--live", "20", "--timeout", "60s", "--json", timeout=90)
        if status != 0:  # say what the simulator saw, not only what the control plane holds
            os.killpg(proc.pid, signal.SIGKILL)
            _, sim_err = await asyncio.wait_for(proc.communicate(), 30)
            pytest.fail(f"{err}\nsimulator stderr (last lines):\n{sim_err.decode(errors='replace')[-4000:]}")
        assert json.loads(out)["machines"][:2] == ["t-00001", "t-00002"]
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        summaries = [json.loads(line) for line in out.decode().splitlines()]
        assert sum(s["agents"] for s in summaries) == 20 and all(s["stopped"] == 0 for s in summaries)
        await wait_for(lambda: control_plane.registry.counts()["limbo"] == 20, what="all in limbo")
        # Second run: the keys are enrolled, no token needed; the same machines come back.
        proc = await simulate()
        await wait_for(lambda: control_plane.registry.counts()["live"] == 20, timeout=60, what="rejoin")
        assert len(control_plane.registry.fleet.machines) == 20
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
    finally:
        for p in started:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # whatever is left of its group
            except ProcessLookupError:
                pass
