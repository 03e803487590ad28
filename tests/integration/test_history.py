"""Metric history end to end: real agents, a real control plane compacting while it
stores (and restarting), ``metrics``, ``storage`` and ``status`` as a user runs them.
Runs on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json

import msgspec

from agent_runtime.collectors import make_collectors
from centrality_core.timefmt import parse_iso
from tests.conftest import FAST, cli, wait_for
from tests.integration.test_metrics import QUICK, Recording

HISTORY = {"chunk_seconds": 1.0, "compact_interval": 0.3}


async def test_compaction_while_storing_and_a_restart_keep_every_sample_once(control_plane, agents, store_url,
                                                                             home):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    control_plane.compactor.settings = msgspec.structs.replace(control_plane.settings, **HISTORY)
    rec = Recording(make_collectors("gpu8", index=5))
    a = await agents("hist-01", collectors=rec, **QUICK)
    await wait_for(lambda: len(rec.taken) >= 15, what="samples before the restart")
    await control_plane.compactor.run_once()
    port = control_plane.address.rsplit(":", 1)[1]
    await control_plane.stop()
    await wait_for(lambda: len(a.agent.outbox) >= 2, what="batches buffered while disconnected")

    cp2 = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": store_url, **FAST, **HISTORY}))
    await cp2.start()
    try:
        await wait_for(lambda: a.agent.state.registered, what="reconnect")
        await wait_for(lambda: cp2.ingest.samples_stored >= 5, what="samples after the restart")
        rec.paused = True
        await wait_for(lambda: not a.agent.sampler.pending and not a.agent.outbox, what="outbox drained")
        await cp2.writer.flush()
        await wait_for(lambda: cp2.compactor.last_pass, what="a history pass")
        # Every window closed (a window plus its grace gone by): the samples span more
        # than two seconds, so at least two one-second chunks, whatever the timing.
        await asyncio.sleep(HISTORY["chunk_seconds"] * 1.5)
        await cp2.compactor.run_once()  # twice: idempotent
        await cp2.compactor.run_once()
        usage = cp2.chunks.usage()
        assert usage["tiers"]["raw"]["chunks"] >= 2

        status, out, err = await cli(home, "metrics", "hist-01", "--since", "10m", "--resolution", "raw", "--json")
        assert status == 0, err
        rows = json.loads(out)
        stamps = [parse_iso(r["ts"]) for r in rows]
        taken = sorted(rec.taken)
        assert len(stamps) == len(taken) == len({r["ts"] for r in rows}), "a sample lost or stored twice"
        assert all(abs(s - t) < 0.0015 for s, t in zip(stamps, taken))  # times kept to the millisecond
        assert all(r["gpu[0].temp_c"] == round(r["gpu[0].temp_c"]) for r in rows)
        assert len(rows[0]) > 200  # every key of the 8-GPU profile

        status, out, err = await cli(home, "storage", "--json")
        assert status == 0, err
        s = json.loads(out)
        raw = next(t for t in s["tiers"] if t["tier"] == "raw")
        assert raw["chunks"] >= usage["tiers"]["raw"]["chunks"]
        assert raw["values"] > 0 and raw["values"] % (len(rows[0]) - 1) == 0  # whole samples of every key
        assert 0 < raw["bytes_per_value"] < 8  # a few seconds per chunk here; long chunks compress far better
        assert raw["oldest"] is not None and s["disk_bytes"] > 0
        status, out, err = await cli(home, "storage")
        assert status == 0, err
        assert "raw" in out and "B/value" in out and "not compacted yet" in out
    finally:
        await cp2.stop()


async def test_size_bound_drops_oldest_and_status_says_so(control_plane, agents, home):
    control_plane.compactor.settings = msgspec.structs.replace(control_plane.settings, **HISTORY)
    await agents("big-01", profile="gpu8", index=2, **QUICK)

    async def chunk_bytes() -> int:
        await control_plane.writer.flush()
        await control_plane.compactor.run_once()
        return control_plane.chunks.usage()["tiers"].get("raw", {}).get("bytes", 0)

    # ~1.5 kB a raw chunk here: 12 kB is several chunks, and a bound of 8 kB must drop some.
    while await chunk_bytes() < 12_000:
        await asyncio.sleep(0.3)
    status, out, err = await cli(home, "status")
    assert "max_store_size" not in out
    status, out, err = await cli(home, "storage", "--json")  # no max_store_size: the default bound
    s = json.loads(out)
    assert s["history"]["bound_source"] in ("half of the free disk at start", "fixed default for Postgres")
    assert s["max_store_size"] > s["disk_bytes"] > 0 and not s["over_bound"]
    status, out, err = await cli(home, "storage")
    assert "max_store_size sets another" in out
    control_plane.compactor.settings = msgspec.structs.replace(control_plane.compactor.settings,
                                                               max_store_size=8_000)
    # 8 kB is below what the store takes without any chunk (its tables, the batches not
    # compacted yet): the oldest chunks go, the newest stay, and both commands say so. SQLite
    # keeps the machine's newest chunk; Postgres drops whole days and all of these are today's.
    assert await chunk_bytes() > 0
    status, out, err = await cli(home, "status", "--json")
    doc = json.loads(out)
    h = doc["history"]
    assert h["max_store_size"] == 8_000 and h["bound_unmet"]
    assert any("raise max_store_size" in w for w in doc["warnings"])
    status, out, err = await cli(home, "status")
    assert "raise max_store_size" in out
    status, out, err = await cli(home, "storage")
    assert "only the newest data left" in out
    if control_plane.store.dialect == "postgresql":
        assert h["bound_dropped_chunks"] == 0 and "past max_store_size" not in out
        return
    assert control_plane.chunks.usage()["tiers"]["raw"]["chunks"] == 1
    assert h["bound_dropped_chunks"] >= 1
    assert h["bound_dropped_tiers"]["raw"]["chunks"] >= 1 and h["bound_dropped_tiers"]["raw"]["newest"]
    assert "were dropped" in out and "raw: " in out
    status, out, err = await cli(home, "status")
    assert "past max_store_size (8000 bytes): dropped raw samples 20" in out
