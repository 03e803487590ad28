"""Live pushes over the operator channel (what the dashboard reads)."""

from __future__ import annotations

import asyncio

import pytest

from centrality_core.errors import NotFound


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


async def next_where(stream, predicate, timeout=10.0):
    async def find():
        async for msg in stream:
            if predicate(msg):
                return msg
    return await asyncio.wait_for(find(), timeout)


async def test_snapshot_then_only_changes(control_plane, operator, agents):
    await agents("sub-01", index=1)
    stream = operator.stream("subscribe", "--interval", "0.1s").__aiter__()
    snap = await anext(stream)
    assert snap["type"] == "snapshot"
    assert [(m["name"], m["state"]) for m in snap["machines"]] == [("sub-01", "live")]
    assert snap["events"][0]["kind"] == "registered"

    b = await agents("sub-02", index=2, sample_interval=0.1, batch_interval=0.2)
    upd = await next_where(stream, lambda m: any(r["name"] == "sub-02" for r in m.get("machines", ())))
    assert upd["type"] == "update"
    assert any(e["kind"] == "registered" and e["machine"] == "sub-02" for e in upd["events"])
    # New samples change the row: its figures arrive without asking.
    row = (await next_where(stream, lambda m: any(r["name"] == "sub-02" and r["cpu_percent"] is not None
                                                   for r in m.get("machines", ()))))
    assert row["type"] == "update"

    await b.stop()
    upd = await next_where(stream, lambda m: any(r["name"] == "sub-02" and r["state"] == "limbo"
                                                  for r in m.get("machines", ())))
    assert any(e["kind"] == "disconnected" for e in upd["events"])
    # sub-01 sends only heartbeats (no metrics here): it is not resent when idle.
    assert all(r["name"] != "sub-01" for r in upd["machines"])
    await stream.aclose()


async def test_machine_values_and_text_are_pushed(control_plane, operator, agents):
    await agents("gpu-sub-01", profile="gpu8", index=3, sample_interval=0.1, batch_interval=0.2)
    stream = operator.stream("subscribe", "--interval", "0.1s", "--machine", "gpu-sub-01").__aiter__()
    msg = await next_where(stream, lambda m: m["type"] == "machine")
    assert msg["name"] == "gpu-sub-01"
    assert "gpu[7].util_percent" in msg["values"]
    assert "NVIDIA H100" in msg["text"]["nvidia_smi"]
    await stream.aclose()


async def test_subscribe_to_unknown_machine(control_plane, operator):
    with pytest.raises(NotFound):
        async for _ in operator.stream("subscribe", "--machine", "nope"):
            pass
