"""Metrics end to end over real SSH: real samples from this machine, the fake
8-GPU profile, exactly-once storage across a control-plane restart, and the
`metrics` / `top` commands. Runs on SQLite and Postgres."""

from __future__ import annotations

import csv
import io
import json

from agent_runtime.collectors import make_collectors
from centrality_core import protocol as p
from control_plane import history
from tests.conftest import FAST, cli, wait_for

QUICK = {"sample_interval": 0.1, "batch_interval": 0.3}


async def test_real_samples_from_this_machine(control_plane, agents, home):
    a = await agents("here-01", profile="real", **QUICK)
    await wait_for(lambda: control_plane.ingest.samples_stored >= 5, what="real samples")
    await control_plane.writer.flush()

    status, out, err = await cli(home, "metrics", "here-01", "--since", "5m", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert len(rows) >= 5 and all("ts" in r for r in rows)
    keys = {k for r in rows for k in r}
    assert "mem.used_bytes" in keys and "mem.total_bytes" in keys
    assert any(k.startswith("fs[") and k.endswith("].percent") for k in keys)
    assert "cpu.percent" in keys and "cpu[0].percent" in keys  # per core, after the first sample
    assert any(k.startswith("net[") for k in keys)
    mem = [r["mem.total_bytes"] for r in rows if "mem.total_bytes" in r]
    assert mem[0] == a.agent.info.memory_total_bytes
    assert not any(k.startswith("gpu") for k in keys)  # no GPU here: no GPU streams, no error

    status, out, _ = await cli(home, "metrics", "here-01", "--stream", "mem", "--csv")
    table = list(csv.reader(io.StringIO(out)))
    assert table[0][0] == "ts" and set(table[0][1:]) == {"mem.used_bytes", "mem.total_bytes", "mem.percent"}
    assert len(table) - 1 == len([r for r in rows if "mem.percent" in r]) or len(table) - 1 >= len(rows)

    status, out, _ = await cli(home, "metrics", "here-01", "--stream", "cpu")
    assert status == 0 and "cpu.percent" in out


async def test_gpu8_profile_shows_gpu_streams_and_top(control_plane, agents, home):
    await agents("gpu-node-01", profile="gpu8", index=1, **QUICK)
    await agents("cpu-node-01", profile="cpu", index=2, **QUICK)
    await wait_for(lambda: all(control_plane.ingest.latest.get(n) for n in ("gpu-node-01", "cpu-node-01")),
                   what="latest values of both")
    await control_plane.writer.flush()
    status, out, err = await cli(home, "metrics", "gpu-node-01", "--stream", "gpu", "--json")
    assert status == 0, err
    keys = {k for r in json.loads(out) for k in r} - {"ts"}
    for i in range(8):
        assert {f"gpu[{i}].util_percent", f"gpu[{i}].mem_used_bytes", f"gpu[{i}].mem_total_bytes"} <= keys
    assert all(k.startswith("gpu[") for k in keys)

    status, out, _ = await cli(home, "top", "--json", "--sort", "gpu")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["gpu-node-01", "cpu-node-01"]
    gpu, cpu = rows
    assert gpu["gpu_count"] == 8 and 0 <= gpu["gpu_util_percent"] <= 100 and gpu["gpu_mem_percent"] is not None
    assert cpu["gpu_count"] == 0 and cpu["gpu_util_percent"] is None and cpu["cpu_percent"] is not None
    status, out, _ = await cli(home, "top")
    assert "gpu-node-01" in out and "GPU%" in out
    latest = control_plane.ingest.latest["gpu-node-01"]
    assert "NVIDIA H100" in latest.text.get("nvidia_smi", "")


async def test_the_client_asks_for_columns_and_prints_the_rows_a_plain_request_answers(
        control_plane, agents, operator, home):
    """The CLI and the dashboard ask ``metrics --columns`` (keys once, values packed) and make
    the rows themselves: the same rows, byte for byte, as ``metrics`` without it answers a
    plain SSH client; ``--json`` prints them unchanged."""
    import msgspec

    from centrality_core import documents as d

    a = await agents("gpu-node-02", profile="gpu8", index=3, **QUICK)
    await wait_for(lambda: control_plane.ingest.samples_stored >= 10, what="samples")
    await a.stop()  # a window that no longer changes
    await control_plane.writer.flush()
    for extra in ([], ["--stream", "gpu"], ["--resolution", "1m"]):  # no minute closed yet: none
        argv = ["metrics", "gpu-node-02", "--since", "5m", *extra]
        plain = await operator.request(*argv)
        cols = await operator.request(*argv, "--columns")
        assert (plain or extra[-1] == "1m") and set(cols) >= {"ts", "keys", "int_values", "float_values"}
        rows = d.metric_rows(d.decode(cols, d.MetricColumns))
        assert msgspec.json.encode(rows) == msgspec.json.encode(plain), extra
    plain = await operator.request("metrics", "gpu-node-02", "--since", "10m")
    assert msgspec.json.encode(await operator.metrics("gpu-node-02", since="10m")) == msgspec.json.encode(plain)
    status, out, err = await cli(home, "metrics", "gpu-node-02", "--since", "10m", "--json")
    assert status == 0, err
    assert json.loads(out) == plain and len(plain) >= 10


class Recording:
    """Real collectors' fake profile, remembering every timestamp it sampled."""

    def __init__(self, inner):
        self.inner, self.taken, self.paused = inner, [], False

    def sample(self, now):
        if self.paused:
            raise RuntimeError("paused by the test")
        self.taken.append(now)
        return self.inner.sample(now)

    def machine_info(self):
        return self.inner.machine_info()


async def test_restart_mid_stream_stores_every_sample_exactly_once(control_plane, agents, store_url):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    rec = Recording(make_collectors("cpu", index=5))
    a = await agents("steady-01", collectors=rec, **QUICK)
    await wait_for(lambda: len(rec.taken) >= 10, what="samples before the restart")
    port = control_plane.address.rsplit(":", 1)[1]
    await control_plane.stop()
    await wait_for(lambda: not a.agent.state.registered, what="agent to notice")
    await wait_for(lambda: a.agent.outbox.unsent >= 3, what="batches made while disconnected")
    away = a.agent.outbox.unsent  # at least these go as one batch

    cp2 = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST}))
    await cp2.start()
    try:
        await wait_for(lambda: a.agent.state.registered, what="reconnect")
        await wait_for(lambda: cp2.ingest.samples_stored >= 5, what="samples after the restart")
        rec.paused = True  # stop taking samples, let everything taken be sent and acknowledged
        await wait_for(lambda: not a.agent.sampler.pending and not a.agent.outbox, what="outbox drained")
        await cp2.writer.flush()
        machine_id = cp2.registry.fleet.get("steady-01").id
        stored = []
        for payload in cp2.store.metric_batches(machine_id, 0, 1e12):
            stored += history.batch_arrays(payload).ts.tolist()
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(stored) == sorted(rec.taken)
        assert len(stored) >= 10  # the samples taken before the restart, at least
        # What the agent made while away went as one batch: stored rows are the batches sent.
        rows = len(list(cp2.store.metric_batches(machine_id, 0, 1e12)))
        assert rows <= a.agent._seq - (away - 1), (rows, a.agent._seq, away)
    finally:
        await cp2.stop()


async def test_replayed_batch_is_stored_once(control_plane, home):
    import asyncssh

    from tests.integration.test_bad_input import RawAgent, hello

    key = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="agent:r", role="agent", public_key=key.export_public_key().decode(),
                                     actor="test")
    raw = await RawAgent.connect(control_plane, key)
    raw.send(hello(name="replay-01"))
    assert isinstance(await raw.receive(), p.Registered)
    now = __import__("time").time()
    batch = p.MetricsBatch(stream="run1", seq=1, ts=[now - 1, now], keys=["cpu.percent"], columns=[[10.0, 20.0]])
    for _ in range(3):
        raw.send(p.encode(batch))
    acks = [await raw.receive() for _ in range(3)]
    assert all(isinstance(m, p.MetricsAck) and (m.stream, m.seq) == ("run1", 1) for m in acks)
    assert control_plane.ingest.duplicates == 2
    # A batch whose columns do not match its keys is a protocol error.
    raw.send(b'{"kind":"metrics","stream":"run1","seq":2,"ts":[1.0],"keys":["a","b"],"columns":[[1.0]]}\n')
    err = await raw.receive()
    assert isinstance(err, p.Error) and "2 keys but 1 columns" in err.reason
    status, out, _ = await cli(home, "metrics", "replay-01", "--json")
    assert [r["cpu.percent"] for r in json.loads(out)] == [10.0, 20.0]
