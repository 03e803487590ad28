"""``gpus [TARGET...] [--idle DURATION]``: every GPU of the fleet (or of the targets), one row each."""

from __future__ import annotations

import time

from centrality_core import durations, gpus, hostlist, targeting
from centrality_core.timefmt import parse_iso
from centrality_core.errors import NotFound, UsageError

from ..history import pick_resolution
from .. import fleetwide
from .dispatch import Ctx, request
from .exec import views


def _args(p) -> None:
    p.add_argument("-l", "--label", action="append", default=[], help="KEY=VALUE (or KEY): all must match")
    p.add_argument("--idle", default=None, help="only GPUs at 0 %% with memory held for this long (1h, 30m)")
    p.add_argument("targets", nargs="*", help="names, globs or ranges (gpu[01-16]); default: the whole fleet")


def _names(ctx: Ctx, ns) -> list[str]:
    selector = targeting.Selector(tuple(ns.targets), tuple(ns.label), include_drained=True)
    if selector.empty:
        return sorted(ctx.services.registry.names(), key=hostlist.natural_key)
    res = targeting.resolve(views(ctx), selector)
    names = res.selected + [n for n, _ in res.skipped]
    if not names or res.unknown:
        raise NotFound("no machine matches " + " ".join(res.unknown or ns.targets + [f"-l {x}" for x in ns.label]))
    return sorted(names, key=hostlist.natural_key)


@request("gpus", args=_args)
async def gpus_request(ctx: Ctx, ns) -> list[dict]:
    """One row per GPU: machine, index, model, util, memory, temperature, power, processes, top user.

    Latest values live on the replica a machine's agent is connected to: machines
    held by a peer are asked of that peer (``--idle`` included). A peer that does not
    answer leaves its machines' rows without values, with ``error`` saying why."""
    svc = ctx.services
    window = None
    if ns.idle is not None:
        window = durations.parse(ns.idle)
        if window <= 0:
            raise UsageError("--idle needs a positive duration (1h, 30m)")
    names = _names(ctx, ns)
    if ctx.from_peer:  # the replica asking wants what our agents told us
        return await _rows(ctx, fleetwide.served_here(svc.registry, names), window)
    idle = ["--idle", ns.idle] if ns.idle is not None else []
    answers = await fleetwide.ask(svc.peers, svc.registry, names,
                                  lambda client, theirs: client.request("gpus", *idle, "--", *theirs))
    rows = await _rows(ctx, answers.here, window)
    for replica, theirs in answers.rows.items():
        asked = set(answers.asked[replica])
        rows += [r for r in theirs if isinstance(r, dict) and r.get("machine") in asked]
    for theirs, why in answers.failed.values():
        rows += [{**r, "error": why} for r in await _rows(ctx, theirs, None)]
    return sorted(rows, key=lambda r: (hostlist.natural_key(r["machine"]), r.get("index", 0)))


async def _rows(ctx: Ctx, names: list[str], window: float | None) -> list[dict]:
    svc = ctx.services
    rows = []
    for name in names:
        m = svc.registry.machine(name)
        rec = svc.registry.records.get(name)
        if m is None or rec is None:
            continue
        latest = svc.ingest.latest.get(name)
        procs = latest.gpu_processes if latest is not None else None
        rows += gpus.gpu_rows(name, m.state.value, _gpu_values(latest), rec.info.get("gpus", []),
                              procs.processes if procs is not None else None)
    if window is None:
        return rows
    return await _idle(ctx, rows, window)


#: Positions of the ``gpu[...]`` keys in a key list, by the list (machines of one shape share it).
_POSITIONS: dict[int, tuple[list[str], list[tuple[int, str]]]] = {}


def _gpu_values(latest) -> dict[str, float]:
    """The latest ``gpu[...]`` values of a machine, without building all of its values."""
    if latest is None or latest.row is None:
        return {}
    keys = latest.keys
    cached = _POSITIONS.get(id(keys))
    if cached is None or cached[0] is not keys:
        if len(_POSITIONS) > 4096:
            _POSITIONS.clear()
        cached = _POSITIONS[id(keys)] = (keys, [(i, k) for i, k in enumerate(keys) if k.startswith("gpu[")])
    row = latest.row
    out = {}
    for i, k in cached[1]:
        v = float(row[i])
        if v == v:  # NaN: no value
            out[k] = v
    return out


async def _idle(ctx: Ctx, rows: list[dict], window: float) -> list[dict]:
    """The rows whose GPU was idle over the whole window, read from stored history."""
    svc = ctx.services
    now = time.time()
    since = now - window
    slack = max(60.0, 0.05 * window)
    st = svc.settings
    resolution = pick_resolution(window, window, {
        "raw": st.raw_retention, "1m": st.rollup_retention, "1h": st.hour_retention})
    out, history = [], {}
    for row in filter(gpus.maybe_idle, rows):
        name = row["machine"]
        if name not in history:
            m = svc.registry.machine(name)
            samples = await svc.metric_reads.query(m.id, since, now, ["gpu"], resolution)
            for s in samples:
                s["t"] = parse_iso(s["ts"])
            history[name] = samples
        if gpus.idle_over(history[name], row["index"], since, slack):
            out.append({**row, "idle_s": window})
    return out
