"""`centrality gpus` against a real control plane over SSH: per-GPU rows with process
counts and top users, `--idle` read from stored history, and a simulated gpu8 agent
whose process list reaches the control plane. Runs on SQLite and Postgres."""

from __future__ import annotations

import json
import time

import asyncssh
import msgspec
import pytest

from centrality_core import protocol as p
from tests.conftest import cli, wait_for
from tests.integration.test_bad_input import RawAgent, hello

GIB = 1 << 30
MIB = 1 << 20


def history(now: float) -> p.MetricsBatch:
    """75 minutes of 4 GPUs, one sample every 30 s:
    0 trains; 1 holds 30 GiB at 0 % throughout (idle); 2 is free (0 %, 1 MiB);
    3 trained until 30 minutes ago, then holds 40 GiB at 0 %."""
    ts = [now - 75 * 60 + 30 * i for i in range(151)]
    keys, cols = [], []

    def add(key, values):
        keys.append(key)
        cols.append(values)

    for g in range(4):
        util, mem = [], []
        for t in ts:
            recent = t > now - 30 * 60
            u, m = [(95.0, 70 * GIB), (0.0, 30 * GIB), (0.0, 1 * MIB),
                    ((0.0, 40 * GIB) if recent else (80.0, 40 * GIB))][g]
            util.append(u)
            mem.append(float(m))
        add(f"gpu[{g}].util_percent", util)
        add(f"gpu[{g}].mem_used_bytes", mem)
        add(f"gpu[{g}].mem_total_bytes", [80.0 * GIB] * len(ts))
        add(f"gpu[{g}].temp_c", [60.0 if g == 0 else 31.0] * len(ts))
        add(f"gpu[{g}].power_w", [650.0 if g == 0 else 70.0] * len(ts))
    procs = p.GpuProcesses(ts=now, source="nvml", processes=[
        p.GpuProcess(gpu=0, pid=4242, user="alice", command="python train.py", used_memory_bytes=70 * GIB,
                     sm_percent=97.0),
        p.GpuProcess(gpu=0, pid=4243, user="carol", command="python eval.py", used_memory_bytes=1 * GIB),
        p.GpuProcess(gpu=1, pid=5151, user="bob", command="jupyter-kernel", used_memory_bytes=30 * GIB),
        p.GpuProcess(gpu=3, pid=6161, user="\x1b[31mmallory\x1b[0m", command="\x1b]0;owned\x07sleep",
                     used_memory_bytes=40 * GIB),
    ])
    return p.MetricsBatch(stream="hist", seq=1, ts=ts, keys=keys, columns=cols, gpu_processes=procs)


@pytest.fixture
async def held(control_plane):
    key = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="agent:h", role="agent", public_key=key.export_public_key().decode(),
                                     actor="test")
    raw = await RawAgent.connect(control_plane, key)
    gpus = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * GIB} for i in range(4)]
    raw.send(hello(name="held-01", gpus=gpus))
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(p.encode(history(time.time())))
    assert isinstance(await raw.receive(), p.MetricsAck)  # stored
    yield raw
    raw.conn.close()


async def test_gpus_rows_with_processes_and_top_user(control_plane, home, held):
    status, out, err = await cli(home, "gpus", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert [(r["machine"], r["index"]) for r in rows] == [("held-01", i) for i in range(4)]
    busy, kernel, free, last = rows
    assert busy["model"] == "NVIDIA H100 80GB HBM3" and busy["util_percent"] == 95.0
    assert busy["mem_used_bytes"] == 70 * GIB and busy["mem_total_bytes"] == 80 * GIB and busy["mem_percent"] == 87.5
    assert (busy["temp_c"], busy["power_w"], busy["processes"], busy["top_user"]) == (60.0, 650.0, 2, "alice")
    assert (kernel["processes"], kernel["top_user"]) == (1, "bob")
    assert (free["processes"], free["top_user"]) == (0, "")
    status, out, _ = await cli(home, "gpus", "held-01")
    assert status == 0
    assert "MACHINE" in out and "TOP USER" in out and "alice" in out and "bob" in out
    assert "\x1b" not in out and "mallory" in out  # the agent's escapes never reach the terminal
    status, out, _ = await cli(home, "gpus", "held-01", "--json")
    last = json.loads(out)[3]
    assert last["top_user"] == "mallory"  # cleaned where the control plane decoded it, for every reader


async def test_gpus_idle_from_history(control_plane, home, held):
    status, out, err = await cli(home, "gpus", "--idle", "1h", "--json")
    assert status == 0, err
    idle = json.loads(out)
    assert [(r["machine"], r["index"], r["top_user"]) for r in idle] == [("held-01", 1, "bob")]
    assert idle[0]["idle_s"] == 3600

    status, out, _ = await cli(home, "gpus", "--idle", "20m", "--json")
    assert [r["index"] for r in json.loads(out)] == [1, 3]  # 3 has been idle for 30 minutes

    status, out, _ = await cli(home, "gpus", "--idle", "2h", "--json")
    assert json.loads(out) == []  # the history does not cover 2 hours: not known to be idle

    status, out, err = await cli(home, "gpus", "--idle", "1h")
    assert status == 0 and "bob" in out and "alice" not in out and "1 GPU(s) at 0 %" in err

    status, out, err = await cli(home, "gpus", "nosuch-*")
    assert status != 0 and "no machine matches" in err


async def test_simulated_gpu8_agent_sends_its_processes(control_plane, agents, home):
    await agents("gpu-sim-01", profile="gpu8", index=3, sample_interval=0.1, batch_interval=0.3)
    await wait_for(lambda: getattr(control_plane.ingest.latest.get("gpu-sim-01"), "gpu_processes", None),
                   what="a process list")
    snap = control_plane.ingest.latest["gpu-sim-01"].gpu_processes
    assert snap.source == "simulated" and all(0 <= x.gpu < 8 for x in snap.processes)
    status, out, err = await cli(home, "gpus", "gpu-sim-01", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert len(rows) == 8 and {r["model"] for r in rows} == {"NVIDIA H100 80GB HBM3"}
    after = control_plane.ingest.latest["gpu-sim-01"].gpu_processes
    assert sum(r["processes"] for r in rows) in (len(snap.processes), len(after.processes))  # lists come every 5 s
    assert msgspec.json.decode(msgspec.json.encode(snap), type=p.GpuProcesses) == snap


async def test_processes_reach_a_machine_subscriber(control_plane, operator, agents):
    from tests.integration.test_subscribe import next_where

    await agents("gpu-sub-02", profile="gpu8", index=4, sample_interval=0.1, batch_interval=0.2)
    stream = operator.stream("subscribe", "--interval", "0.1s", "--machine", "gpu-sub-02").__aiter__()
    msg = await next_where(stream, lambda m: m["type"] == "machine" and m.get("gpu_processes"))
    snap = msg["gpu_processes"]
    assert snap["source"] == "simulated" and isinstance(snap["ts"], float)
    # an empty list is sent as no "processes" field (defaults are left out): when every job is idle
    assert all({"gpu", "pid", "user", "command", "used_memory_bytes"} <= set(x) for x in snap.get("processes", []))
    await stream.aclose()


async def test_no_processes_for_a_1_1_control_plane(control_plane, agents, monkeypatch):
    """An agent registered by a control plane that speaks 1.1 leaves the process lists out."""
    monkeypatch.setattr(p, "PROTOCOL_VERSION", (1, 1))  # what both sides say they speak
    a = await agents("gpu-old-01", profile="gpu8", index=5, sample_interval=0.1, batch_interval=0.2)
    await wait_for(lambda: a.agent.state.registered and a.agent.state.batches_sent >= 15, timeout=20,
                   what="batches sent over 3 s (process lists are taken every 5 s of wall time)")
    assert a.agent.packed and not a.agent.gpu_processes
    assert control_plane.ingest.latest["gpu-old-01"].values  # the metrics still flow
    assert control_plane.ingest.latest["gpu-old-01"].gpu_processes is None
