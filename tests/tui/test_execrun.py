"""Exec from the dashboard, the parts without Textual: which machines, folded results,
the fake shell and the fake control plane's exec, drain and refusals, marks, and
the requests ``OperatorSource`` makes."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from centrality_core.client import OperatorClient
from centrality_core.documents import DryRun, ExecStart, ExecSummary, Skipped, Snapshot, Update, decode_exec
from centrality_core.errors import Forbidden, UsageError
from tui import execrun
from tui.execrun import ExecResults, command_argv, describe_command, matching, plan, selection
from tui.model import FleetModel
from tui.source import OperatorSource, SourceError

from . import fakeshell
from .conftest import FROZEN, scenario


def model_of(src) -> FleetModel:
    model = FleetModel(lambda: FROZEN)
    model.apply(Snapshot(ts=FROZEN, machines=[src.row(m, FROZEN) for m in src.machines.values()]))
    return model


def _wire(doc: dict):
    return decode_exec(msgspec.json.encode(doc))


def start(machines, skipped=(), unknown=()):
    return _wire({"type": "start", "id": "x", "argv": ["sh", "-c", "true"], "machines": list(machines),
                  "skipped": [{"machine": n, "reason": r} for n, r in skipped], "unknown": list(unknown)})


def out(machine, data, stream="stdout"):
    return _wire({"type": "output", "machine": machine, "stream": stream, "data": data})


def exit_(machine, status="ok", exit_code=0, code=0, signal=None, truncated=False):
    return _wire({"type": "exit", "machine": machine, "status": status, "exit_code": exit_code, "signal": signal,
                  "code": code, "duration": 0.1, "truncated": truncated, "error": None})


def summary(exit_code, **kw):
    return _wire({"type": "summary", "id": "x", "exit_code": exit_code, **kw})


# ------------------------------------------------------------------ which machines


def test_selection_is_the_marks_else_the_cursor():
    assert selection({"gpu-10", "gpu-2", "cpu-1"}, "gpu-07") == (["cpu-1", "gpu-2", "gpu-10"], "3 marked machines")
    assert selection({"gpu-2"}, None) == (["gpu-2"], "1 marked machine")
    assert selection(set(), "gpu-07") == (["gpu-07"], "the machine under the cursor")
    assert selection(set(), None) == ([], "no machine")


def test_matching_is_every_row_shown_and_says_which_filter():
    assert matching(["b-2", "a-1"], "") == (["a-1", "b-2"], "every machine in the fleet (2)")
    names, text = matching(["a-1"], "pool=eval\x1b[31m")
    assert names == ["a-1"] and text == "every machine matching the filter “pool=eval” (1)"


async def test_the_plan_is_the_control_planes_dry_run():
    src = scenario()
    model = model_of(src)
    names = list(model.rows) + ["gone-01"]
    answer = await src.exec_plan(execrun.targets(names))
    assert src.requests[-1] == ("exec_plan", ("cpu-[01-12],gone-01,gpu-[01-06]",))
    p = plan(answer, names, "every machine", model.rows)
    assert len(p.names) == 19 and len(p.selected) == 15
    assert dict(p.skipped) == {"gpu-03": "limbo", "cpu-07": "dead", "gpu-05": "drained"}
    assert p.selected_folded == "cpu-[01-06,08-12],gpu-[01-02,04,06]"
    assert p.targets() == ["cpu-[01-12],gone-01,gpu-[01-06]"]  # every chosen name: the control plane says
    assert [(g.key, g.folded) for g in p.skipped_groups()] == [("dead", "cpu-07"), ("limbo", "gpu-03"),
                                                               ("drained", "gpu-05")]
    assert p.confirm_above == 50 and not p.needs_confirm
    assert plan(None, ["gone-01"], "nothing").targets() == []  # matched no machine at all
    assert execrun.pending(names, "x").pending and execrun.refused(names, "x", "no").error == "no"
    # A plan is made again only when one of its machines changes state or drain, comes or goes.
    key = execrun.plan_key(model.rows, p.names)
    model.rows["cpu-01"].cpu = 99.0
    assert execrun.plan_key(model.rows, p.names) == key
    model.rows["cpu-01"].drained = True
    assert execrun.plan_key(model.rows, p.names) != key


def test_plan_needs_confirmation_above_the_threshold_the_control_plane_applies():
    names = [f"m{i:02d}" for i in range(51)]
    answer = DryRun(machines=names, confirm_above=50)
    assert plan(answer, names, "all").needs_confirm
    assert not plan(DryRun(machines=names[:50], confirm_above=50), names[:50], "50").needs_confirm
    assert plan(DryRun(machines=names[:3], confirm_above=2), names[:3], "3").needs_confirm  # configured lower
    assert not plan(DryRun(machines=names), names, "all").needs_confirm  # an older control plane: it asks itself


def test_command_line_runs_in_a_shell():
    assert command_argv("  nvidia-smi -L | head -1 ") == ["sh", "-c", "nvidia-smi -L | head -1"]
    assert command_argv("   ") == []
    assert describe_command(["sh", "-c", "uptime"]) == "uptime"
    assert describe_command(["echo", "a b"]) == "echo 'a b'"


def test_marks_toggle_clear_and_leave_with_their_machine():
    model = model_of(scenario())
    rev = model.revision
    assert model.toggle_mark("gpu-01") and model.toggle_mark("cpu-02")
    assert model.revision > rev
    assert not model.toggle_mark("gpu-01")
    assert not model.toggle_mark("no-such")  # only machines of the fleet
    assert model.marked == {"cpu-02"}
    model.apply(Update(ts=FROZEN, removed=["cpu-02"]))
    assert model.marked == set()
    model.toggle_mark("gpu-02")
    model.clear_marks()
    assert model.marked == set()


# ------------------------------------------------------------------ what came back


def test_results_progress_and_folded_groups():
    r = ExecResults()
    assert r.running and r.total == 0
    r.feed(start(["gpu-01", "gpu-02", "gpu-03", "gpu-04"], skipped=[("gpu-05", "limbo"), ("gpu-06", "drained")],
                 unknown=["gpu-09"]))
    for name in ("gpu-01", "gpu-02", "gpu-04"):
        r.feed(out(name, "8 GPUs "))
        r.feed(out(name, "ok\n"))
    r.feed(exit_("gpu-01"))
    r.feed(exit_("gpu-04"))
    assert (r.done, r.total, r.failed) == (2, 4, 0)
    assert r.still_running() == ["gpu-02", "gpu-03"]
    r.feed(out("gpu-03", "ECC error\n", "stderr"))
    r.feed(exit_("gpu-03", "failed", 3, 3))
    r.feed(exit_("gpu-02", "timeout", None, 124))
    assert r.failed == 2 and r.counts_text() == "2 ok, 1 failed, 1 timed out"
    groups = r.groups()
    assert [(g.folded, len(g)) for g in groups] == [("gpu-[01,04]", 2), ("gpu-02", 1), ("gpu-03", 1)]
    assert groups[0].key == ("8 GPUs ok\n", "", "ok", "exit 0", False)
    shown, more = r.shown()
    assert more == 0
    assert shown[0].stdout == ("8 GPUs ok",) and shown[0].text == "exit 0"
    assert shown[1].text == "timed out (code 124)" and shown[1].stdout == ("8 GPUs ok",)
    assert shown[2].stderr == ("ECC error",) and shown[2].text == "exit 3"
    assert [(g.key, g.folded) for g in r.skipped_groups()] == [("limbo", "gpu-05"), ("drained", "gpu-06")]
    assert r.unknown == ["gpu-09"]
    assert r.running
    r.feed(summary(124, duration=1.5))
    assert not r.running and r.exit_code == 124


def test_identical_output_with_another_exit_code_is_another_group():
    r = ExecResults()
    r.feed(start(["a1", "a2", "a3"]))
    for n in ("a1", "a2", "a3"):
        r.feed(out(n, "same\n"))
    r.feed(exit_("a1"))
    r.feed(exit_("a2"))
    r.feed(exit_("a3", "killed", None, 137, signal=9))
    assert [(g.folded, g.key.text) for g in r.groups()] == [("a[1-2]", "exit 0"),
                                                            ("a3", "killed by signal 9 (code 137)")]


def test_output_is_sanitised_and_capped_for_display():
    r = ExecResults()
    r.feed(start(["m1", "m2"]))
    r.feed(out("m1", "ok\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\tx\n\x9b6n"))
    r.feed(exit_("m1", truncated=True))
    r.feed(out("m2", "".join(f"line {i}\n" for i in range(execrun.LINES_SHOWN + 7))))
    r.feed(exit_("m2"))
    shown, _ = r.shown()
    by = {g.folded: g for g in shown}
    assert by["m1"].stdout == ("okred   x",) and by["m1"].truncated  # tab to column 8; 8-bit CSI removed whole
    assert len(by["m2"].stdout) == execrun.LINES_SHOWN and by["m2"].hidden_lines == 7
    assert r.groups()[0].key.stdout == "okred\tx\n"  # cleaned once, when decoded; laid out when drawn


def test_many_distinct_outputs_are_counted_beyond_what_is_drawn(monkeypatch):
    monkeypatch.setattr(execrun, "GROUPS_SHOWN", 3)
    r = ExecResults()
    names = [f"n{i}" for i in range(5)]
    r.feed(start(names))
    for n in names:
        r.feed(out(n, n))
        r.feed(exit_(n))
    shown, more = r.shown()
    assert len(shown) == 3 and more == 2


def test_a_stream_that_ends_without_summary_is_an_error_and_cancel_is_recorded():
    r = ExecResults()
    r.feed(start(["a"]))
    r.finish()
    assert not r.running and "ended the request before it finished" in r.error
    r = ExecResults()
    r.cancel()
    assert r.cancelled and not r.running
    r = ExecResults()
    r.fail("'exec' changes the fleet: viewer keys may only read")
    assert r.error.startswith("'exec'") and r.start is None


# ------------------------------------------------------------------ the fake control plane


def test_fake_shell_is_deterministic():
    gpu = {"gpus": [{"index": 0, "name": "H100"}], "kernel": "6.8", "os": "Ubuntu"}
    run = fakeshell.run
    assert run(["sh", "-c", "nvidia-smi -L"], hostname="h", info=gpu, timeout=30).stdout == "GPU 0: H100\n"
    r = run(["sh", "-c", "nvidia-smi -L"], hostname="h", info={}, timeout=30)
    assert (r.status, r.exit_code, r.code, r.stderr) == ("failed", 127, 127, "sh: 1: nvidia-smi: not found\n")
    assert run(["sh", "-c", "hostname"], hostname="h", info={}, timeout=30).stdout == "h\n"
    assert run(["sh", "-c", "exit 3"], hostname="h", info={}, timeout=30).code == 3
    assert run(["sh", "-c", "sleep 60"], hostname="h", info={}, timeout=30).status == "timeout"
    assert run(["sh", "-c", "sleep 5"], hostname="h", info={}, timeout=30).wait == 5
    assert run(["sh", "-c", "echo 'a  b' c"], hostname="h", info={}, timeout=30).stdout == "a  b c\n"


async def test_fake_exec_streams_refuses_and_records_cancel():
    src = scenario()
    docs = [d async for d in src.exec(["gpu-[01-03]"], ["sh", "-c", "nvidia-smi -L"])]
    assert isinstance(docs[0], ExecStart) and isinstance(docs[-1], ExecSummary)
    assert docs[0].machines == ["gpu-01", "gpu-02"] and docs[0].skipped == [Skipped(machine="gpu-03", reason="limbo")]
    assert docs[-1].exit_code == 0 and docs[-1].counts == {"ok": 2}

    src.confirm_above = 1
    with pytest.raises(SourceError) as err:
        [d async for d in src.exec(["gpu-[01-02]"], ["true"])]
    assert err.value.code == "confirm_required" and not err.value.lost
    assert isinstance([d async for d in src.exec(["gpu-[01-02]"], ["true"], yes=True)][-1], ExecSummary)
    src.confirm_above = 50

    gen = src.exec(["cpu-0[1-3]"], ["sh", "-c", "sleep 20"])
    assert isinstance(await gen.__anext__(), ExecStart)
    task = asyncio.ensure_future(gen.__anext__())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert src.execs[-1]["status"] == "cancelled" and src.cancelled == ["cpu-01", "cpu-02", "cpu-03"]

    src.role = "viewer"
    with pytest.raises(SourceError) as err:
        [d async for d in src.exec(["gpu-01"], ["true"])]
    assert err.value.code == "forbidden" and "viewer keys may only read" in err.value.reason
    with pytest.raises(SourceError):
        await src.drain(["gpu-01"], "x")
    with pytest.raises(SourceError) as err:
        await src.exec_plan(["gpu-01"])  # exec --dry-run is a write request too
    assert err.value.code == "forbidden"


async def test_fake_drain_and_undrain_push_the_flag_and_events():
    src = scenario()
    q: asyncio.Queue = asyncio.Queue()
    src._subs.append(q)
    r = await src.drain(["gpu-0[1-2]", "gpu-05"], "  PSU swap ")
    assert (r.drained, r.already, r.unknown, r.reason) == (["gpu-01", "gpu-02"], ["gpu-05"], [], "PSU swap")
    doc = q.get_nowait()
    assert {m.name: m.drained for m in doc.machines} == {"gpu-01": True, "gpu-02": True}
    assert [e.kind for e in doc.events] == ["drained", "drained"]
    shown = await src.machine("gpu-01")
    assert shown.drain.reason == "PSU swap" and shown.drain.by == "operator:you"
    with pytest.raises(SourceError) as err:
        await src.drain(["gpu-01"], "  ")
    assert err.value.code == "usage"
    r = await src.undrain(["gpu-01", "cpu-01"])
    assert (r.undrained, r.not_drained, r.unknown) == (["gpu-01"], ["cpu-01"], [])
    assert (await src.machine("gpu-01")).drain is None


# ------------------------------------------------------------------ OperatorSource's requests


class _Client(OperatorClient):
    """The real operator client (typed methods, argv, decoding) without SSH: records the
    requests, answers with ``lines`` / ``answer`` or fails as told."""

    def __init__(self, lines=(), answer=None, error=None) -> None:
        self.lines, self.answer, self.error, self.calls = list(lines), answer, error, []

    async def stream(self, *argv, check=True, decode=json.loads):
        self.calls.append(("stream", argv, check))
        for line in self.lines:
            yield decode(msgspec.json.encode(line))
        if self.error is not None:
            raise self.error

    async def raw(self, *argv):
        self.calls.append(("request", argv))
        if self.error is not None:
            raise self.error
        return msgspec.json.encode(self.answer), 0


def source_with(client) -> OperatorSource:
    src = OperatorSource.__new__(OperatorSource)
    src.label, src._client = "test", client

    async def connected():
        return client

    src._connected = connected
    return src


async def test_operator_source_exec_and_drain_requests():
    client = _Client([start(["a"]), summary(0)])
    src = source_with(client)
    docs = [d async for d in src.exec(["a,b[1-2]"], ["sh", "-c", "uptime"], timeout="30s", max_output="64k",
                                      yes=True)]
    assert [type(d) for d in docs] == [ExecStart, ExecSummary]
    assert client.calls == [("stream", ("exec", "--timeout", "30s", "--max-output", "64k", "--yes", "a,b[1-2]",
                                        "--", "sh", "-c", "uptime"), False)]
    client.answer = {"drained": ["gpu-01"], "already": [], "unknown": [], "reason": "PSU swap"}
    assert (await src.drain(["gpu-01"], "PSU swap")).drained == ["gpu-01"]
    client.answer = {"undrained": ["gpu-01"], "not_drained": [], "unknown": []}
    assert (await src.undrain(["gpu-01"])).undrained == ["gpu-01"]
    client.answer = {"dry_run": True, "machines": ["a"], "skipped": [{"machine": "b1", "reason": "limbo"}],
                     "unknown": ["b2"], "confirm_above": 7}
    dry = await src.exec_plan(["a,b[1-2]"])
    assert dry.confirm_above == 7 and dry.skipped == [Skipped(machine="b1", reason="limbo")]
    assert client.calls[1:] == [("request", ("machines", "drain", "--reason", "PSU swap", "--", "gpu-01")),
                                ("request", ("machines", "undrain", "--", "gpu-01")),
                                ("request", ("exec", "--dry-run", "a,b[1-2]", "--"))]


@pytest.mark.parametrize("error, code", [
    (Forbidden("'exec' changes the fleet: viewer keys may only read"), "forbidden"),
    (UsageError("this would run on 60 machines, more than 50: confirm with --yes", code="confirm_required"),
     "confirm_required"),
])
async def test_operator_source_refusals_keep_the_code_and_the_link(error, code):
    src = source_with(_Client(error=error))
    with pytest.raises(SourceError) as err:
        [d async for d in src.exec(["a"], ["true"])]
    assert err.value.code == code and not err.value.lost and err.value.reason == error.reason
    with pytest.raises(SourceError) as err:
        await src.drain(["a"], "why")
    assert err.value.code == code and not err.value.lost
