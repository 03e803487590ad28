"""``status`` (a canary for CI and cron) and ``wait`` (block until enough machines are live)."""

from __future__ import annotations

import asyncio
import time

from centrality_core import durations, timefmt
from centrality_core.errors import UsageError, WaitTimeout

from . import Ctx, Reply, request


@request("status")
async def status(ctx: Ctx, ns) -> Reply:
    """Version, uptime, agents and store health; non-zero exit when unhealthy."""
    cp = ctx.cp
    store_error = await cp.db(cp.store.health)
    problems = []
    if store_error:
        problems.append(f"store: {store_error}")
    if cp.writer.last_error:
        problems.append(f"store writes failing ({cp.writer.backlog} queued): {cp.writer.last_error}")
    history = cp.compactor.status()
    if history["error"]:
        problems.append(f"metric history pass failing: {history['error']}")
    counts = cp.registry.counts()
    warnings = []  # worth a look, not a failing control plane
    refusing = cp.metrics.refusing(time.time() - 3600)
    if refusing:
        warnings.append(f"metrics: batches of {refusing} machine(s) refused in the last hour "
                        "(over the key budget or unsafe keys; see `centrality events`)")
    if cp.metrics.samples_too_old:
        warnings.append(f"metrics: {cp.metrics.samples_too_old} samples not stored since start: "
                        "outside [-7 d, +5 min] of the control plane's clock (agent clocks wrong?)")
    data = {
        "healthy": not problems,
        "problems": problems,
        "warnings": warnings,
        "version": cp.version,
        "started_at": timefmt.iso(cp.started_at),
        "uptime_s": round(time.time() - cp.started_at, 1),
        "address": cp.advertise,
        "replica": cp.replica or None,
        "fingerprint": cp.fingerprint,
        "store": {"backend": cp.store.dialect, "ok": store_error is None,
                  "write_backlog": cp.writer.backlog},
        "agents_connected": counts["live"],
        "connections_refused": dict(cp.admission.refused),
        "metrics": {"samples_stored": cp.metrics.samples_stored,
                    "duplicate_batches": cp.metrics.duplicates,
                    "refused_batches": cp.metrics.batches_refused,
                    "samples_too_old": cp.metrics.samples_too_old,
                    "sample_to_stored_lag": cp.metrics.lag_percentiles()},
        "history": {**history, "last_pass": timefmt.iso(history["last_pass"]),
                    "bound_dropped_at": timefmt.iso(history["bound_dropped_at"])},
        "machines": counts,
        "flags": {"drained": sum(r.flags.drained for r in cp.registry.records.values()),
                  "unhealthy": sum(r.flags.unhealthy for r in cp.registry.records.values())},
        "thresholds": {
            "heartbeat_interval_s": cp.registry.fleet.thresholds.heartbeat_interval,
            "limbo_after_s": cp.registry.fleet.thresholds.limbo_after,
            "dead_after_s": cp.registry.fleet.thresholds.dead_after,
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
    reg = ctx.cp.registry
    start = time.monotonic()

    async def reached() -> None:
        while reg.counts()["live"] < ns.live:
            await reg.changed()

    try:
        await asyncio.wait_for(reached(), timeout)
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    live = sorted(n for n, m in reg.fleet.machines.items() if m.state.value == "live")
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
