"""Hostile content within every message limit: a key budget per machine and per
batch, unsafe keys refused, agent text cleaned where it is decoded, and what
reaches a terminal or a log line (text, --csv, --json, the log) unable to drive it."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from agent_runtime.collectors.simulated import fake_machine_info
from centrality_core import joinstring
from centrality_core import protocol as p
from centrality_core.sanitize import log_formatter
from tests.conftest import cli, wait_for
from tests.integration.hostile import RawAgent


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


async def _registered(cp, name: str, info: dict | None = None, labels=None) -> RawAgent:
    token = await cp.auth.create_token(ttl=60, uses=1, actor="t", address=cp.address)
    raw = await RawAgent.connect(cp, enrolling=True)
    answer = await raw.hello(name, info or fake_machine_info("cpu", 1), token=joinstring.decode(token["join"]).t,
                             labels=labels)
    assert isinstance(answer, p.Registered), answer
    return raw


async def _stored_batches(cp, name: str) -> int:
    machine_id = cp.registry.fleet.get(name).id
    await cp.writer.flush()
    return len(await cp.db(cp.store.metric_batches, machine_id, 0, time.time() + 60))


async def test_a_machine_cannot_grow_the_server_past_its_key_budget(control_plane, home):
    cp = control_plane
    cp.ingest.max_keys_per_machine, cp.ingest.max_keys_per_batch = 120, 60
    raw = await _registered(cp, "greedy-1")
    fresh = iter(range(10**6))

    def new_keys(n):
        return [f"junk[{next(fresh):06d}].{'x' * 100}" for _ in range(n)]

    assert not (await raw.batch(new_keys(50))).refused
    assert not (await raw.batch(new_keys(50))).refused  # 100 distinct within the hour
    shapes_before = len(cp.ingest._shapes)
    latest_keys = cp.ingest.latest["greedy-1"].keys
    for _ in range(5):  # every further new key set goes past 120: refused, at no lasting cost
        ack = await raw.batch(new_keys(50))
        assert "budget" in ack.refused and "max_keys_per_machine" in ack.refused
    assert len(cp.ingest._shapes) == shapes_before
    assert cp.ingest.latest["greedy-1"].keys is latest_keys
    assert await _stored_batches(cp, "greedy-1") == 2
    assert (await raw.batch(new_keys(61))).refused.startswith("61 metric keys in one batch")
    # keys it already has are still taken (the machine is not cut off)
    assert not (await raw.batch(latest_keys)).refused
    assert await _stored_batches(cp, "greedy-1") == 3

    status, out, _ = await cli(home, "status", "--json")
    s = json.loads(out)
    assert status == 0 and s["healthy"]  # a warning, not a failing control plane
    assert any("refused" in w and "1 machine" in w for w in s["warnings"])
    assert s["metrics"]["refused_batches"] == 6
    status, out, _ = await cli(home, "events", "--machine", "greedy-1", "--json")
    assert [e["kind"] for e in json.loads(out)].count("metrics_refused") == 1  # once, not per batch
    await raw.close()


async def test_unsafe_metric_keys_are_refused_and_markup_is_shown_as_text(control_plane, home):
    cp = control_plane
    raw = await _registered(cp, "keys-1")
    for bad in ("cpu\x1b]0;pwned\x07.percent", "mem\n.percent", "gpu\u202e[0].x", "a\x9b2J"):
        ack = await raw.batch(["cpu.percent", bad])
        assert "control or bidi" in ack.refused
    link = "[link=https://evil.example]click-me[/link]"
    ack = await raw.batch(["cpu.percent", link, "[bold red]x"])
    assert not ack.refused
    for args in (("--keys", "*"), ("--csv",), ("--json",)):  # the table shows a summary unless asked for all
        status, out, err = await cli(home, "metrics", "keys-1", "--since", "1h", *args)
        assert status == 0, err
        assert "\x1b" not in out and "\x9b" not in out
        assert (link if "--json" not in args else "click-me") in out  # literally, not a live link
    await raw.close()


async def test_agent_text_is_cleaned_where_it_is_decoded(control_plane, home):
    cp = control_plane
    evil = "host\x1b]0;pwned\x07\u202eexe.\x9b2J\x1b[31m-1"
    info = dict(fake_machine_info("cpu", 2), hostname=evil, cpu_model="EPYC\x1b[2J")
    raw = await _registered(cp, "clean-1", info=info, labels={"team": "ml\x1b[5m\u2066", "see": "[link=x]y[/link]"})
    rec = cp.registry.records["clean-1"]
    assert rec.info["hostname"] == "hostexe.-1" and rec.info["cpu_model"] == "EPYC"
    assert rec.labels == {"team": "ml", "see": "[link=x]y[/link]"}
    ack = await raw.batch(["cpu.percent"], text={"nvidia_smi": "GPU 0\x1b]0;x\n| 1 train.py |\x1b[2J\n"})
    assert not ack.refused
    assert cp.ingest.latest["clean-1"].text["nvidia_smi"] == "GPU 0\n| 1 train.py |\n"
    for args in (("machines", "ls"), ("machines", "ls", "--json"), ("machines", "show", "clean-1"),
                 ("machines", "show", "clean-1", "--json")):
        status, out, err = await cli(home, *args)
        assert status == 0, err
        for raw_char in ("\x1b", "\x9b", "\u202e", "\u2066", "\x07"):
            assert raw_char not in out, (args, raw_char)
    status, out, _ = await cli(home, "machines", "ls")
    assert "[link=x]y[/link]" in out  # shown as typed, not as Rich markup
    await raw.close()


async def test_an_agents_error_text_cannot_forge_a_log_line(control_plane):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        raw = await _registered(control_plane, "liar-1")
        forged = "2026-12-01 00:00:00,000 WARNING centrality.auth: operator key revoked"
        raw.send(p.Error(code="bye", reason=f"done\n{forged}\r\x1b[2K"))
        await wait_for(lambda: "agent reported a protocol error" in stream.getvalue(), what="the log line")
    finally:
        root.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    line = next(x for x in lines if "agent reported a protocol error" in x)
    assert "done\\n2026-12-01" in line and "\x1b" not in line and "\r" not in line


async def test_samples_outside_the_kept_window_are_acknowledged_counted_and_reported(control_plane, home):
    cp = control_plane
    raw = await _registered(cp, "clock-1")
    ack = await raw.batch(["cpu.percent"], ts=[time.time() - 8 * 86400, time.time() - 8 * 86400 + 1])
    assert ack.too_old == 2 and not ack.refused
    assert await _stored_batches(cp, "clock-1") == 0
    status, out, _ = await cli(home, "status", "--json")
    s = json.loads(out)
    assert s["metrics"]["samples_too_old"] == 2
    assert any("2 samples not stored" in w for w in s["warnings"])
    await raw.close()


async def test_the_real_agent_counts_what_the_control_plane_did_not_store(control_plane, agents):
    """A real agent whose batches are refused logs it once and keeps running."""
    control_plane.ingest.max_keys_per_batch = 3
    a = await agents("counted-1", sample_interval=0.05, batch_interval=0.2)
    await wait_for(lambda: a.agent.state.batches_refused >= 2, what="refused batches to be reported")
    assert "max_keys_per_batch" in a.agent.state.last_refusal
    assert a.agent.state.registered and not a.task.done()
