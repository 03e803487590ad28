"""``exec`` (run a command on many machines over their agents' channels) and ``audit``.

``exec [OPTIONS] [TARGET...] -- CMD [ARGS...]`` answers with JSON lines as
things happen, so the CLI can show output as it arrives:

    {"type": "start", "id", "argv", "machines": [...], "skipped": [{machine, reason}], "unknown": [...]}
    {"type": "output", "machine", "stream": "stdout"|"stderr", "data"}     (any number)
    {"type": "exit", "machine", "status", "exit_code", "signal", "code", "duration", "truncated", "error"}
    {"type": "summary", "id", "exit_code", "counts": {status: n}, "duration", ...}   (last)

The request's exit status is the summary's ``exit_code``: the worst of all
machines (see ``control_plane/fanout.py``). With ``--dry-run`` the answer
is one document: the resolved targets and the confirmation threshold the
control plane applies (``confirm_above``). The documents are those of
``centrality_core.documents`` (``ExecStart`` ... ``ExecSummary``, ``DryRun``). Every exec (not dry runs) is audited:
a row is written when it starts and completed when it ends, cancelled or not.
If the operator's channel closes (Ctrl-C), this request is cancelled and the
command is cancelled on every machine still running it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import time
import uuid
from collections import Counter

import msgspec

from centrality_core import durations, hostlist, targeting, timefmt
from centrality_core.documents import DryRun, ExecStart, ExecSummary, Skipped
from centrality_core.errors import NotFound, StoreError, UsageError

from .. import peer_exec
from ..fanout import ExecRun, worst
from ..fleetwide import holder
from ..peer_exec import PeerRun
from .dispatch import Ctx, Reply, request

MAX_TIMEOUT = 86400.0
DEFAULT_MAX_OUTPUT = 1024 * 1024
MAX_OUTPUT = 64 * 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.I)


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``1M``, ``1MiB`` -> bytes (powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"invalid size {text!r}: use bytes or e.g. 64k, 1M")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """``TARGET... -- CMD...`` -> (targets, argv)."""
    if "--" not in words:
        return words, []
    i = words.index("--")
    return words[:i], words[i + 1:]


def selector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--label", action="append", default=[], help="KEY=VALUE (or KEY): all must match")
    p.add_argument("--all", action="store_true", help="every machine")
    p.add_argument("--include-drained", action="store_true", help="drained machines too")


def _exec_args(p: argparse.ArgumentParser) -> None:
    selector_args(p)
    p.add_argument("--timeout", default="30s", help="per machine (default 30s)")
    p.add_argument("--fanout", type=int, default=0, help="machines running at once (default: all)")
    p.add_argument("--max-output", default="1M", help="output kept per machine (default 1M)")
    p.add_argument("--yes", action="store_true", help="no confirmation above the threshold")
    p.add_argument("--dry-run", action="store_true", help="only resolve the targets")
    p.add_argument("words", nargs=argparse.REMAINDER, help="[TARGET...] -- CMD [ARGS...]")


def views(ctx: Ctx) -> list[targeting.MachineView]:
    reg = ctx.services.registry
    return [targeting.MachineView(m.name, m.state.value, reg.records[m.name].labels,
                                  reg.records[m.name].flags.drained)
            for m in reg.machines()]


def resolve(ctx: Ctx, targets: list[str], ns) -> tuple[targeting.Selector, targeting.Resolution]:
    bad = [t for t in targets if t.startswith("-")]
    if bad:
        raise UsageError(f"unexpected {bad[0]!r}: options go before the targets, the command after --")
    selector = targeting.Selector(tuple(targets), tuple(ns.label), ns.all, ns.include_drained)
    res = targeting.resolve(views(ctx), selector)
    if not res.matched:
        raise NotFound(f"no machine matches {selector.describe()!r}"
                       + (f" (unknown: {', '.join(res.unknown)})" if res.unknown else ""))
    return selector, res


def resolution_json(res: targeting.Resolution) -> dict:
    """The resolved targets, as the fields of ``ExecStart`` and ``DryRun`` (and ``cp``'s start)."""
    return {"machines": res.selected, "machines_folded": hostlist.fold(res.selected),
            "skipped": [Skipped(machine=n, reason=why) for n, why in res.skipped],
            "unknown": res.unknown}


@request("exec", writes=True, args=_exec_args)
async def exec_(ctx: Ctx, ns) -> Reply:
    """Run a command on many machines at once; output streams back as JSON lines."""
    svc = ctx.services
    targets, argv = split_words(ns.words)
    timeout = durations.parse(ns.timeout)
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g}s")
    max_output = parse_size(ns.max_output)
    if max_output > MAX_OUTPUT:
        raise UsageError(f"--max-output is at most {MAX_OUTPUT // 2**20} MiB per machine")
    if ns.fanout < 0:
        raise UsageError("--fanout must be 0 (all at once) or more")
    if not argv and not ns.dry_run:
        raise UsageError("no command: put it after --, e.g. exec gpu[01-04] -- nvidia-smi -L")
    selector, res = resolve(ctx, targets, ns)
    threshold = svc.settings.exec_confirm_above
    if ns.dry_run:
        return Reply(DryRun(selector=selector.describe(), argv=argv, **resolution_json(res),
                            confirm_above=threshold))
    if len(res.selected) > threshold and not ns.yes:
        raise UsageError(f"this would run on {len(res.selected)} machines, more than {threshold}: "
                         "confirm with --yes", code="confirm_required")

    if ctx.from_peer:  # a peer's part of a run it audits: our own agents, no row, no hooks
        return await _peer_part(ctx, argv, res, timeout, ns.fanout, max_output)

    exec_id = uuid.uuid4().hex
    started = time.time()
    audit = {"id": exec_id, "started_at": started, "finished_at": None, "actor": ctx.actor, "argv": argv,
             "selector": selector.describe(), "machines": res.selected,
             "skipped": [[n, why] for n, why in res.skipped], "results": {}, "status": "running",
             "exit_code": None}
    svc.writer.put_audit(dict(audit))
    ctx.emit(ExecStart(id=exec_id, argv=argv, selector=selector.describe(), **resolution_json(res)))
    here, elsewhere = peer_exec.split(res.selected, lambda n: holder(svc.registry, n))
    share = peer_exec.shares(ns.fanout, {"": len(here), **{k: len(v) for k, v in elsewhere.items()}})
    run = ExecRun(svc.registry.session, id=exec_id, argv=argv, names=here, timeout=timeout, fanout=share[""],
                  max_output=max_output, emit=ctx.emit, backlog=ctx.backlog)
    remote = [PeerRun(svc.peers, replica, names, argv, timeout=timeout, timeout_text=ns.timeout,
                      fanout=share[replica], max_output=max_output, max_output_text=ns.max_output,
                      emit=ctx.emit, backlog=ctx.backlog) for replica, names in elsewhere.items()]
    svc.commands.add(run)
    status = "done"
    parts = [asyncio.ensure_future(run.run())] + [asyncio.ensure_future(r.run()) for r in remote]
    try:
        await asyncio.gather(*parts)
    except asyncio.CancelledError:  # the operator went away (Ctrl-C): stop everywhere
        run.cancel()
        for task in parts:
            task.cancel()
        await asyncio.gather(*parts, return_exceptions=True)  # the peers' channels are closed
        status = "cancelled"
        raise
    finally:
        svc.commands.remove(run)
        merged = {**run.results, **{n: r for part in remote for n, r in part.results.items()}}
        results = [merged[n] for n in res.selected if n in merged]
        if status == "done" and any(r.status == "cancelled" for r in results):
            status = "cancelled"  # the control plane is stopping
        code = worst(results) if results else 1
        audit.update(finished_at=time.time(), status=status, exit_code=code,
                     results={r.name: r.json() for r in results})
        svc.writer.put_audit(audit)
        summary = _summary(audit, results, res, {p.replica: p.failure for p in remote if p.failure})
        svc.hooks.fire("exec.failed" if code else "exec.done",
                      {k: getattr(summary, k) for k in ("id", "actor", "argv", "selector", "exit_code", "counts",
                                                        "failed", "status")})
    return Reply(summary, code)


async def _peer_part(ctx: Ctx, argv: list[str], res: targeting.Resolution, timeout: float, fanout: int,
                     max_output: int) -> Reply:
    """A peer's share of a run: the machines named, run from this replica's agents (a
    machine held elsewhere is unreachable from here); the replica asked audits it."""
    svc = ctx.services
    exec_id = uuid.uuid4().hex
    started = time.time()
    ctx.emit(ExecStart(id=exec_id, argv=argv, **resolution_json(res)))
    run = ExecRun(svc.registry.session, id=exec_id, argv=argv, names=res.selected, timeout=timeout, fanout=fanout,
                  max_output=max_output, emit=ctx.emit, backlog=ctx.backlog)
    svc.commands.add(run)
    try:
        await run.run()
    except asyncio.CancelledError:  # the replica asked closed its channel: cancel here too
        run.cancel("cancelled by the operator")
        raise
    finally:
        svc.commands.remove(run)
    results = list(run.results.values())
    code = worst(results) if results else 1
    counts = Counter(r.status for r in results)
    return Reply(ExecSummary(id=exec_id, actor=ctx.actor, argv=argv, exit_code=code, counts=dict(counts),
                             duration=round(time.time() - started, 3), ran=len(results)), code)


def _summary(audit: dict, results, res: targeting.Resolution, replicas_failed: dict[str, str]) -> ExecSummary:
    counts = Counter(r.status for r in results)
    return ExecSummary(
        id=audit["id"], actor=audit["actor"], argv=audit["argv"], selector=audit["selector"],
        status=audit["status"], exit_code=audit["exit_code"],
        duration=round(audit["finished_at"] - audit["started_at"], 3),
        counts=dict(counts), ran=len(results), skipped=len(res.skipped),
        failed=hostlist.fold(r.name for r in results if r.status != "ok"),
        replicas_failed=replicas_failed or msgspec.UNSET,
    )


# ------------------------------------------------------------------ audit


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="at most this many, newest first")
    p.add_argument("--since", help="only newer than this (e.g. 1h, 7d)")
    p.add_argument("--actor", help="only execs by this actor (e.g. operator:alice)")
    p.add_argument("--id", help="one exec (an id or its first characters)")


def audit_json(row: dict) -> dict:
    results = row.get("results") or {}
    counts = Counter(r.get("status", "?") for r in results.values())
    return {
        "id": row["id"], "started_at": timefmt.iso(row["started_at"]),
        "finished_at": timefmt.iso(row["finished_at"]),
        "duration": round(row["finished_at"] - row["started_at"], 3) if row["finished_at"] else None,
        "actor": row["actor"], "argv": row["argv"], "command": shlex.join(row["argv"]),
        "selector": row["selector"], "machines": row["machines"],
        "machines_folded": hostlist.fold(row["machines"]),
        "skipped": [{"machine": n, "reason": why} for n, why in row["skipped"]],
        "status": row["status"], "exit_code": row["exit_code"], "counts": dict(counts),
        "results": {name: {"status": r.get("status"), "exit_code": r.get("exit_code"),
                           "code": r.get("code"), "signal": r.get("signal"), "duration": r.get("duration")}
                    for name, r in results.items()},
    }


@request("audit", args=_audit_args)
async def audit(ctx: Ctx, ns) -> list[dict]:
    """Every exec: who, when, what, on which machines, and how each ended."""
    since = time.time() - durations.parse(ns.since) if ns.since else None
    limit = max(1, min(ns.limit, 10_000))
    try:
        await ctx.services.writer.flush()  # read our own writes
    except StoreError:
        pass  # the read below reports the store's state
    rows = await ctx.services.db(ctx.services.store.audit, limit=limit, since=since, actor=ns.actor, id=ns.id)
    if not rows and ns.actor:
        keys = await ctx.services.db(ctx.services.store.list_keys, True)
        if ns.actor not in {f"{k['role']}:{k['name']}" for k in keys}:
            raise NotFound(f"no actor {ns.actor!r}: actors are ROLE:KEY, e.g. operator:alice "
                           "(`centrality keys ls` lists the keys)")
    if not rows and ns.id:
        raise NotFound(f"no exec with an id starting {ns.id!r}")
    return [audit_json(r) for r in rows]
