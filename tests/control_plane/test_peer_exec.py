"""A peer's part of a fleet-wide exec (control_plane/peer_exec.py) and fleet-wide reads
(control_plane/fleetwide.py), against an in-memory peer: what the operator's stream
gets when the peer answers, dies mid-run, cannot be reached, goes silent, or when the
operator goes away."""

from __future__ import annotations

import asyncio

import pytest

from centrality_core.documents import ExecExit, ExecOutput, ExecStart, ExecSummary, Skipped
from centrality_core.errors import ConnectError
from control_plane import fleetwide, peer_exec
from control_plane.peer_exec import PeerRun


class FakeClient:
    def __init__(self, lines, *, then=None, hang: asyncio.Event | None = None) -> None:
        self.lines, self.then, self.hang = lines, then, hang
        self.asked: list[tuple[list[str], list[str], dict]] = []
        self.closed = asyncio.Event()

    async def exec(self, names, argv, **options):
        self.asked.append((list(names), list(argv), options))
        try:
            for line in self.lines:
                yield line
            if self.hang is not None:
                await self.hang.wait()
            if self.then is not None:
                raise self.then
        finally:
            self.closed.set()  # the channel is closed: the peer cancels its part

    async def request(self, *argv):
        self.asked.append((list(argv), [], {}))
        if self.then is not None:
            raise self.then
        return self.lines


class FakePeers:
    def __init__(self, clients: dict[str, FakeClient]) -> None:
        self.clients = clients

    async def call(self, name, fn):
        if name not in self.clients:
            raise ConnectError(f"replica {name} is not running (no current lease)")
        return await fn(self.clients[name])


def _run(client: FakeClient | None, names=("b1", "b2"), **kw) -> tuple[PeerRun, list]:
    out: list = []
    peers = FakePeers({"cp-b": client} if client else {})
    options = dict(timeout=5.0, timeout_text="5s", fanout=0, max_output=1024, max_output_text="1k")
    return PeerRun(peers, "cp-b", list(names), ["uptime"], emit=out.append, **{**options, **kw}), out


def test_split_keeps_order_and_shares_follow_sizes():
    here, elsewhere = peer_exec.split(["a1", "b1", "a2", "c1", "b2"], lambda n: {"b": "cp-b", "c": "cp-c"}.get(n[0], ""))
    assert here == ["a1", "a2"] and elsewhere == {"cp-b": ["b1", "b2"], "cp-c": ["c1"]}
    assert peer_exec.shares(0, {"": 10, "cp-b": 5}) == {"": 0, "cp-b": 0}
    assert peer_exec.shares(30, {"": 200, "cp-b": 100, "cp-c": 1}) == {"": 20, "cp-b": 10, "cp-c": 1}
    assert peer_exec.deadline(100, 10, 30) == 10 * (30 + peer_exec.ANSWER_GRACE) + peer_exec.PEER_GRACE


async def test_the_peers_documents_become_the_operators_with_the_options_passed_on():
    client = FakeClient([ExecStart(id="x", argv=["uptime"], machines=["b1", "b2"]),
                         ExecOutput(machine="b1", stream="stdout", data="up 3 days\n"),
                         ExecExit(machine="b1", status="ok", exit_code=0, code=0, duration=0.1),
                         ExecExit(machine="b2", status="failed", exit_code=3, code=3, duration=0.2),
                         ExecSummary(id="x", exit_code=3)])
    run, out = _run(client, fanout=7)
    results = await run.run()
    assert client.asked == [(["b1", "b2"], ["uptime"], dict(timeout="5s", fanout=7, max_output="1k",
                                                            include_drained=True, yes=True))]
    assert [type(d).__name__ for d in out] == ["ExecOutput", "ExecExit", "ExecExit"]
    assert {n: (r.status, r.code) for n, r in results.items()} == {"b1": ("ok", 0), "b2": ("failed", 3)}
    assert run.failure == "" and client.closed.is_set()


async def test_a_peer_lost_mid_run_ends_each_unanswered_machine_with_an_error():
    client = FakeClient([ExecExit(machine="b1", status="ok", exit_code=0, code=0)],
                        then=ConnectError("replica cp-b: SSH connection lost"))
    run, out = _run(client)
    results = await run.run()
    assert results["b1"].status == "ok"
    assert (results["b2"].status, results["b2"].error) == ("unreachable", "replica cp-b: SSH connection lost")
    assert out[-1] == ExecExit(machine="b2", status="unreachable", code=255,
                               error="replica cp-b: SSH connection lost")
    assert run.failure == "replica cp-b: SSH connection lost"


async def test_an_unreachable_peer_and_a_silent_one_never_hang_the_run():
    run, out = _run(None)
    results = await run.run()
    assert {r.status for r in results.values()} == {"unreachable"} and len(out) == 2
    assert "replica cp-b is not running" in run.failure

    hang = asyncio.Event()
    run, out = _run(FakeClient([], hang=hang))
    run.deadline = 0.2
    results = await asyncio.wait_for(run.run(), 5)
    assert {r.status for r in results.values()} == {"timeout"}
    assert run.failure == "no answer from replica cp-b within 0.2s"


async def test_machines_the_peer_skipped_say_why_and_the_output_bound_holds():
    client = FakeClient([ExecStart(id="x", argv=["uptime"], machines=["b1"],
                                   skipped=[Skipped(machine="b2", reason="limbo")]),
                         ExecOutput(machine="b1", stream="stdout", data="x" * 1000),
                         ExecOutput(machine="b1", stream="stdout", data="y" * 100),
                         ExecExit(machine="b1", status="ok", exit_code=0, code=0),
                         ExecSummary(id="x", exit_code=0)])
    run, out = _run(client)
    results = await run.run()
    assert (results["b2"].status, results["b2"].error) == ("unreachable", "limbo on replica cp-b")
    assert run.failure == ""  # the peer answered; one machine was not there to run it
    assert [d.data[0] for d in out if isinstance(d, ExecOutput)] == ["x"] and results["b1"].truncated


async def test_the_operator_going_away_closes_the_peers_channel_and_cancels_its_machines():
    client = FakeClient([ExecOutput(machine="b1", stream="stdout", data="working\n")], hang=asyncio.Event())
    run, out = _run(client)
    task = asyncio.ensure_future(run.run())
    while not out:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.closed.is_set()
    assert {r.status for r in run.results.values()} == {"cancelled"}


class _Machine:
    def __init__(self, conn, held_by=""):
        self.conn, self.held_by = conn, held_by


class _Registry:
    def __init__(self, machines):
        self.machines = machines

    def machine(self, name):
        return self.machines.get(name)


async def test_fleetwide_reads_ask_each_holder_once_and_say_which_did_not_answer():
    reg = _Registry({"a1": _Machine(object()), "b1": _Machine(None, "cp-b"), "b2": _Machine(None, "cp-b"),
                     "c1": _Machine(None, "cp-c"), "gone": _Machine(None)})
    peers = FakePeers({"cp-b": FakeClient([{"name": "b1"}, {"name": "b2"}]),
                       "cp-c": FakeClient([], then=ConnectError("replica cp-c: connection refused"))})
    answers = await fleetwide.ask(peers, reg, ["a1", "b1", "b2", "c1", "gone"],
                                  lambda client, names: client.request("health", "--", *names))
    assert answers.here == ["a1", "gone"]
    assert peers.clients["cp-b"].asked == [(["health", "--", "b1", "b2"], [], {})]
    assert answers.rows == {"cp-b": [{"name": "b1"}, {"name": "b2"}]}
    assert answers.failed == {"cp-c": (["c1"], "replica cp-c: connection refused")}
    assert fleetwide.served_here(reg, ["a1", "b1", "gone"]) == ["a1"]
