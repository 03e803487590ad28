"""A 100 MB push does not starve the heartbeats of other agents, and Ctrl-C cancels a copy everywhere.

The control plane, the receiving agents and five bystander agents share one
event loop here (a harsher setting than production, where each agent is its
own process); the bystanders heartbeat every 0.5 s and go to limbo after 5 s
of silence. During the copy no bystander may leave ``live``, and the gaps
between their heartbeats as the control plane records them stay below the
limbo threshold.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys

import pytest

from tests.conftest import REPO, cli, cli_env, wait_for
from tests.integration.shell.test_copy import files_fleet

HEARTBEATS = {"heartbeat_interval": 0.5, "limbo_after": 5.0, "dead_after": 60.0}


async def _fleet(agents, tmp_path, names):
    return await files_fleet(agents, tmp_path, names, subdir="data")


@pytest.mark.parametrize("cp_settings", [HEARTBEATS], indirect=True)
async def test_heartbeats_of_other_agents_unaffected_by_a_100_mb_copy(control_plane, agents, home, tmp_path):
    roots = await _fleet(agents, tmp_path, ["recv01", "recv02"])
    bystanders = [f"idle{i}" for i in range(1, 6)]
    await _fleet(agents, tmp_path, bystanders)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1024 * 1024))
    fleet = control_plane.registry.fleet
    gaps = {n: 0.0 for n in bystanders}
    states = set()
    last = {n: fleet.get(n).last_heartbeat for n in bystanders}

    async def watch():
        while True:
            for n in bystanders:
                m = fleet.get(n)
                states.add(m.state.value)
                if m.last_heartbeat != last[n]:
                    last[n] = m.last_heartbeat
                gaps[n] = max(gaps[n], control_plane.registry.clock() - last[n])
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        status, out, err = await cli(home, "cp", str(big), "recv[01-02]:/data/big.bin", timeout=300)
    finally:
        watcher.cancel()
    assert status == 0, err
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    for root in roots.values():
        assert hashlib.sha256((root / "data" / "big.bin").read_bytes()).hexdigest() == digest
    assert states == {"live"}
    limbo_after = control_plane.thresholds.limbo_after
    assert max(gaps.values()) < limbo_after, gaps


async def test_ctrl_c_cancels_the_copy_everywhere_and_leaves_no_partial_file(control_plane, agents, home,
                                                                            tmp_path):
    roots = await _fleet(agents, tmp_path, ["recv01", "recv02"])
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1024 * 1024))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "cp", str(big), "recv[01-02]:/data/big.bin",
        env=cli_env(home), cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await wait_for(lambda: any(n.endswith(".centrality-tmp") for r in roots.values()
                               for n in os.listdir(r / "data")), timeout=60, what="the copy to start")
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    await wait_for(lambda: all(os.listdir(r / "data") == [] for r in roots.values()), timeout=15,
                   what="the agents to remove their partial files")
    await control_plane.writer.flush()
    row = (await control_plane.db(control_plane.store.audit, limit=1))[0]
    assert row["argv"] == ["cp", "put", "/data/big.bin"] and row["status"] == "cancelled"
    assert {r["status"] for r in row["results"].values()} == {"cancelled"}
