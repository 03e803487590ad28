"""``status`` (a canary for CI and cron) and ``wait`` (block until enough machines are live).

Both count the whole fleet: on a replica, each peer is asked which machines it
serves (``fleet.py``); ``status`` also lists the replicas.
"""

from __future__ import annotations

import asyncio
import time

from centrality_core import durations, timefmt
from centrality_core.aio import within
from centrality_core.client import Answer
from centrality_core.errors import CentralityError, UsageError, WaitTimeout

from ..fleetview import Merged, count, replicas_section
from ..store import replicas
from .dispatch import Ctx, Reply, request
from .fleet import Presence, ask_peers, presence, serving

STATES = ("live", "limbo", "dead")


async def _peer_status(client) -> dict:
    answer: Answer = await client.call("status")  # an unhealthy peer answers with status 1: still an answer
    if not isinstance(answer.data, dict):
        raise CentralityError(f"answered status {answer.status} without a document")
    return answer.data


async def _replica_rows(ctx: Ctx):
    svc = ctx.services
    if ctx.from_peer or not svc.endpoint.replica:
        return [], {}
    return await asyncio.gather(svc.db(replicas.leases, svc.store), svc.db(replicas.held_counts, svc.store))


def _unconfirmed_warnings(merged: Merged[Presence], where: dict[str, str]) -> list[str]:
    return [f"replica {name}{f' ({where[name]})' if name in where else ''} did not answer"
            f"{': ' + merged.unanswered[name] if name in merged.unanswered else ''}; its {n} machine(s) are "
            "counted as the store last recorded them"
            for name, n in sorted(merged.held_unanswered().items())]


@request("status")
async def status(ctx: Ctx, ns) -> Reply:
    """Version, uptime, agents and store health; non-zero exit when unhealthy."""
    svc = ctx.services
    store_error, answers, (leases, held) = await asyncio.gather(
        svc.db(svc.store.health), ask_peers(ctx, _peer_status), _replica_rows(ctx))
    mine = serving(ctx)
    merged = presence(ctx, {p: a.get("serving", []) if isinstance(a, dict) else a for p, a in answers.items()})
    now = time.time()
    replica_rows = replicas_section(leases, held, answers, svc.endpoint.replica, len(mine), now, timefmt.iso)
    problems = []
    if store_error:
        problems.append(f"store: {store_error}")
    if svc.writer.last_error:
        problems.append(f"store writes failing ({svc.writer.backlog} queued): {svc.writer.last_error}")
    problems += [f"background task {name} ended ({why}): what it does has stopped; restart the control plane"
                 for name, why in sorted(svc.endpoint.failed_tasks.items())]
    history = svc.compactor.status()
    if history["error"]:
        problems.append(f"metric history pass failing: {history['error']}")
    counts = count(merged.rows, STATES)
    # worth a look, not a failing control plane: a replica that does not answer is the
    # fleet running degraded (its agents fail over), not this control plane failing
    warnings = _unconfirmed_warnings(merged, {r["name"]: r["address"] for r in replica_rows})
    warnings += [f"replica {p} did not answer: {why}" for p, why in sorted(merged.unanswered.items())
                 if p not in merged.held_unanswered()]
    if history["bound_unmet"]:
        warnings.append(f"metric history: raise max_store_size ({history['max_store_size']} bytes): "
                        f"{history['disk_bytes']} bytes on disk with only the newest data left (what is not "
                        "compacted yet and each machine's newest chunks)")
    refusing = svc.ingest.refusing(time.time() - 3600)
    if refusing:
        warnings.append(f"metrics: batches of {refusing} machine(s) refused in the last hour "
                        "(over the key budget or unsafe keys; see `centrality events`)")
    if svc.holds.held:
        warnings.append(f"metrics: {svc.holds.held} machine(s) that registered in a reconnect storm hold "
                        f"their metrics back until it is over (at most {svc.holds.max_hold:g} s each); "
                        "nothing is lost, their history arrives late")
    if svc.read_priority.lag >= svc.read_priority.late:
        warnings.append(f"event loop {svc.read_priority.lag:.1f} s late (the control plane is short of CPU): "
                        f"agents' connections are not read for {svc.read_priority.pause:g} s at a time so that "
                        "operators and handshakes get through; their data arrives late, nothing is lost")
    if svc.ingest.samples_too_old:
        warnings.append(f"metrics: {svc.ingest.samples_too_old} samples not stored since start: "
                        "outside [-7 d, +5 min] of the control plane's clock (agent clocks wrong?)")
    data = {
        "healthy": not problems,
        "problems": problems,
        "warnings": warnings,
        "version": svc.endpoint.version,
        "started_at": timefmt.iso(svc.endpoint.started_at),
        "uptime_s": round(time.time() - svc.endpoint.started_at, 1),
        "address": svc.endpoint.advertise,
        "replica": svc.endpoint.replica or None,
        "fingerprint": svc.endpoint.fingerprint,
        "store": {"backend": svc.store.dialect, "ok": store_error is None,
                  "write_backlog": svc.writer.backlog, "write_behind_s": round(svc.writer.behind, 3)},
        "agents_connected": len(mine) + sum(a.get("agents_connected") or 0 for a in answers.values()
                                            if isinstance(a, dict)),
        "connections_refused": dict(svc.admission.refused),
        # how late the event loop ran last; agents' reads paused for operators meanwhile (readpause.py)
        "event_loop": {"lag_s": round(max(0.0, svc.read_priority.lag), 3),
                       "agent_read_pauses": svc.read_priority.pauses,
                       "agent_reads_paused_s": round(svc.read_priority.paused_for, 1)},
        "metrics": {"samples_stored": svc.ingest.samples_stored,
                    "duplicate_batches": svc.ingest.duplicates,
                    "refused_batches": svc.ingest.batches_refused,
                    "samples_too_old": svc.ingest.samples_too_old,
                    # agents holding their metrics back after a storm (holds.py), and released in all
                    "held": svc.holds.held, "held_released": svc.holds.released,
                    "sample_to_stored_lag": svc.ingest.lag_percentiles()},
        "history": {**history, "last_pass": timefmt.iso(history["last_pass"]),
                    "bound_dropped_at": timefmt.iso(history["bound_dropped_at"])},
        "machines": counts,
        # registrations refused as a moment before, so not recorded again as events (registry.py)
        "refusals_not_recorded": svc.registry.refusals_not_recorded,
        "machines_from_store": sum(merged.held_unanswered().values()),
        "replicas": replica_rows,
        "flags": {"drained": sum(r.flags.drained for r in svc.registry.records.values()),
                  "unhealthy": sum(r.flags.unhealthy for r in svc.registry.records.values())},
        "thresholds": {
            "heartbeat_interval_s": svc.registry.thresholds.heartbeat_interval,
            "limbo_after_s": svc.registry.thresholds.limbo_after,
            "dead_after_s": svc.registry.thresholds.dead_after,
        },
    }
    if ctx.from_peer:
        data["serving"] = mine  # for the replica that asked: which machines count as live here
    return Reply(data, 0 if not problems else 1)


def _wait_args(p):
    p.add_argument("--live", type=int, required=True, help="wait until at least N machines are live")
    p.add_argument("--timeout", default="60s", help="give up after this long (default 60s)")


@request("wait", args=_wait_args)
async def wait(ctx: Ctx, ns) -> dict:
    """Block until at least N machines are live, or time out (exit 124)."""
    if ns.live < 0:
        raise UsageError("--live must be zero or more")
    timeout = durations.parse(ns.timeout)
    reg = ctx.services.registry
    start = time.monotonic()
    merged: Merged[Presence] = presence(ctx, {})

    async def fleet_now() -> Merged[Presence]:
        if ctx.from_peer:  # a peer asks which machines are live here
            return Merged([Presence(n, "live") for n in serving(ctx)])
        answers = await ask_peers(ctx, lambda c: c.wait(0, "0s"))
        return presence(ctx, {p: a.data.get("machines", []) if isinstance(a, Answer) else a
                              for p, a in answers.items()})

    def live(m: Merged[Presence]) -> list[str]:  # only confirmed: not what the store says of a silent replica
        return sorted(r.name for r in m.rows if r.state == "live" and not r.from_store)

    async def reached() -> None:
        nonlocal merged
        while True:
            changed = asyncio.ensure_future(reg.changed())
            merged = await fleet_now()
            if len(live(merged)) >= ns.live:
                changed.cancel()
                return
            # peers' machines change without telling this registry: ask again every second
            await asyncio.wait([changed], timeout=1.0 if ctx.services.peers.names() else None)
            changed.cancel()

    try:
        if ctx.from_peer:  # a peer asks which machines are live here: now, without waiting
            merged = await fleet_now()
        else:
            await within(reached(), timeout)
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    names = live(merged)
    answer = {"live": len(names), "wanted": ns.live, "waited_s": round(time.monotonic() - start, 3),
              "machines": names, "timed_out": timed_out}
    if not timed_out:
        return answer
    # the answer says how far it got (CI reads it with jq), with the error's code and exit status
    counts = count(merged.rows, STATES)
    silent = merged.held_unanswered()
    unconfirmed = "".join(f"; {n} held by replica {p}, which did not answer" for p, n in sorted(silent.items()))
    error = WaitTimeout(f"timed out after {timeout:g}s: {len(names)} of {ns.live} "
                        f"machines live ({counts['limbo']} in limbo, {counts['dead']} dead{unconfirmed})")
    return Reply({**answer, "error": error.code, "reason": error.reason, "exit_code": error.exit_code},
                 error.exit_code)
