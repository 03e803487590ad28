"""The exec fan-out and the router built alone: sessions are looked up by a function,
agents are doubles that record what they were sent."""

from __future__ import annotations

import asyncio

import msgspec

from centrality_core import protocol as p
from centrality_core.lifecycle import Event, Liveness
from control_plane.fanout import ExecRun, worst
from control_plane.router import CommandRouter

from .conftest import AgentLink


def run_on(links: dict, names: list[str], lines: list, *, fanout: int = 0, timeout: float = 5.0) -> ExecRun:
    return ExecRun(links.get, id="x1", argv=["uptime"], names=names, timeout=timeout, fanout=fanout,
                   max_output=8, emit=lambda line: lines.append(msgspec.to_builtins(line)))  # as sent


async def test_each_machine_gets_the_command_and_reports_its_end():
    links = {"a": AgentLink(), "b": AgentLink()}
    lines: list = []
    run = run_on(links, ["a", "b", "gone"], lines)
    router = CommandRouter()
    router.add(run)
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0)
    assert [type(m) for m in links["a"].sent] == [p.Command] and links["a"].sent[0].argv == ["uptime"]
    router.message("a", p.CommandOutput(id="x1", stream="stdout", data="0123456789"))
    router.message("a", p.CommandExit(id="x1", exit_code=0, duration=0.1))
    router.message("b", p.CommandExit(id="x1", exit_code=3, duration=0.1))
    results = await asyncio.wait_for(task, 1)
    assert {n: r.status for n, r in results.items()} == {"a": "ok", "b": "failed", "gone": "unreachable"}
    assert worst(list(results.values())) == 255
    (out,) = [ln for ln in lines if ln["type"] == "output"]
    assert out["data"] == "01234567" and results["a"].truncated  # max_output is counted here too


async def test_fanout_bounds_how_many_run_at_once_and_a_lost_machine_is_unreachable():
    links = {n: AgentLink() for n in ("a", "b", "c")}
    run = run_on(links, ["a", "b", "c"], [], fanout=1)
    router = CommandRouter()
    router.add(run)
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0)
    assert [bool(links[n].sent) for n in "abc"] == [True, False, False]
    router.on_lifecycle([Event("disconnected", "id-a", "a", 0.0, Liveness.LIVE, Liveness.LIMBO, "gone")])
    assert links["b"].sent  # the next one started
    router.message("b", p.CommandExit(id="x1", exit_code=0))
    router.message("c", p.CommandExit(id="x1", exit_code=0))
    results = await asyncio.wait_for(task, 1)
    assert [results[n].status for n in "abc"] == ["unreachable", "ok", "ok"]


async def test_cancel_stops_what_runs_and_never_starts_what_waits():
    links = {n: AgentLink() for n in ("a", "b")}
    run = run_on(links, ["a", "b"], [], fanout=1)
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0)
    run.cancel()
    results = await asyncio.wait_for(task, 1)
    assert [type(m) for m in links["a"].sent] == [p.Command, p.Cancel] and links["b"].sent == []
    assert results["a"].status == results["b"].status == "cancelled" and results["b"].error == "not started"
