"""``status`` (a canary for CI and cron) and ``wait`` (block until enough machines are live)."""

from __future__ import annotations

import asyncio
import time

from centrality_core import durations, timefmt
from centrality_core.errors import UsageError, WaitTimeout

from .dispatch import Ctx, Reply, request


@request("status")
async def status(ctx: Ctx, ns) -> Reply:
    """Version, uptime, agents and store health; non-zero exit when unhealthy."""
    svc = ctx.services
    store_error = await svc.db(svc.store.health)
    problems = []
    if store_error:
        problems.append(f"store: {store_error}")
    if svc.writer.last_error:
        problems.append(f"store writes failing ({svc.writer.backlog} queued): {svc.writer.last_error}")
    history = svc.compactor.status()
    if history["error"]:
        problems.append(f"metric history pass failing: {history['error']}")
    counts = svc.registry.counts()
    warnings = []  # worth a look, not a failing control plane
    refusing = svc.ingest.refusing(time.time() - 3600)
    if refusing:
        warnings.append(f"metrics: batches of {refusing} machine(s) refused in the last hour "
                        "(over the key budget or unsafe keys; see `centrality events`)")
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
                  "write_backlog": svc.writer.backlog},
        "agents_connected": counts["live"],
        "connections_refused": dict(svc.admission.refused),
        "metrics": {"samples_stored": svc.ingest.samples_stored,
                    "duplicate_batches": svc.ingest.duplicates,
                    "refused_batches": svc.ingest.batches_refused,
                    "samples_too_old": svc.ingest.samples_too_old,
                    "sample_to_stored_lag": svc.ingest.lag_percentiles()},
        "history": {**history, "last_pass": timefmt.iso(history["last_pass"]),
                    "bound_dropped_at": timefmt.iso(history["bound_dropped_at"])},
        "machines": counts,
        # registrations refused as a moment before, so not recorded again as events (registry.py)
        "refusals_not_recorded": svc.registry.refusals_not_recorded,
        "flags": {"drained": sum(r.flags.drained for r in svc.registry.records.values()),
                  "unhealthy": sum(r.flags.unhealthy for r in svc.registry.records.values())},
        "thresholds": {
            "heartbeat_interval_s": svc.registry.thresholds.heartbeat_interval,
            "limbo_after_s": svc.registry.thresholds.limbo_after,
            "dead_after_s": svc.registry.thresholds.dead_after,
        },
    }
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

    async def reached() -> None:
        while reg.counts()["live"] < ns.live:
            await reg.changed()

    try:
        await asyncio.wait_for(reached(), timeout)
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    live = sorted(m.name for m in reg.machines() if m.state.value == "live")
    answer = {"live": len(live), "wanted": ns.live, "waited_s": round(time.monotonic() - start, 3),
              "machines": live, "timed_out": timed_out}
    if not timed_out:
        return answer
    # the answer says how far it got (CI reads it with jq), with the error's code and exit status
    counts = reg.counts()
    error = WaitTimeout(f"timed out after {timeout:g}s: {counts['live']} of {ns.live} "
                        f"machines live ({counts['limbo']} in limbo, {counts['dead']} dead)")
    return Reply({**answer, "error": error.code, "reason": error.reason, "exit_code": error.exit_code},
                 error.exit_code)
