"""The typed operator documents against a real control plane: what the client decodes
and the CLI prints under ``--json`` is, byte for byte, what the control plane sent (the
Structs neither drop, rename, reorder nor retype a field of the real answers)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from centrality_core import documents as d


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


async def _same(operator, t, argv) -> None:
    raw = (await operator.call(*argv)).data
    assert msgspec.json.encode(d.decode(raw, t)) == msgspec.json.encode(raw), argv


async def test_typed_answers_are_the_control_planes_documents_unchanged(control_plane, agents, operator):
    await agents("doc-gpu", index=3, profile="gpu8", sample_interval=0.1, batch_interval=0.2)
    await agents("doc-cpu", index=4, profile="cpu", sample_interval=0.1, batch_interval=0.2)
    for _ in range(100):  # figures in the rows
        if all(r.cpu_percent is not None for r in await operator.top()):
            break
        await asyncio.sleep(0.1)
    await operator.drain(["doc-cpu"], "PSU swap")
    await _same(operator, list[d.MachineSummary], ["machines", "ls"])
    await _same(operator, d.MachineDetail, ["machines", "show", "doc-gpu"])
    await _same(operator, d.MachineDetail, ["machines", "show", "doc-cpu"])  # drained: a drain record
    await _same(operator, list[d.Event], ["events", "--limit", "50"])
    await _same(operator, list[d.FleetRow], ["top"])
    await _same(operator, d.DryRun, ["exec", "--dry-run", "doc-*", "--", "true"])
    await _same(operator, d.Undrained, ["machines", "undrain", "--", "doc-cpu", "nope"])
    await _same(operator, d.Drained, ["machines", "drain", "--reason", "again", "--", "doc-cpu"])
    assert (await operator.exec_dry_run(["doc-*"])).confirm_above == control_plane.settings.exec_confirm_above

    lines = []
    async for line in operator.stream("subscribe", "--interval", "0.1s", "--machine", "doc-gpu"):
        lines.append(line)
        if len(lines) >= 4:
            break
    for raw in lines:
        assert msgspec.json.encode(d.decode(raw, d.Subscription)) == msgspec.json.encode(raw)
    assert {raw["type"] for raw in lines} >= {"snapshot", "machine"}

    raws = [line async for line in operator.stream("exec", "doc-*", "--", "sh", "-c", "echo hi; exit 3",
                                                   check=False)]
    assert [r["type"] for r in raws][0] == "start" and raws[-1]["type"] == "summary"
    for raw in raws:
        assert msgspec.json.encode(d.decode(raw, d.ExecLine)) == msgspec.json.encode(raw)
