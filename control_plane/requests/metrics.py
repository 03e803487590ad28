"""``metrics NAME`` (history of a machine's streams) and ``top`` (the fleet now)."""

from __future__ import annotations

import time

from centrality_core import durations, names
from centrality_core.documents import MetricColumns
from centrality_core.summary import select, split_key
from centrality_core.errors import NotFound, UsageError

from .. import history
from ..views import fleet_row
from .dispatch import Ctx, request
from .fleet import fleet

TOP_COLUMNS = ("name", "state", "cpu", "mem", "gpu", "gpu_mem", "disk", "net")
_SUMMARY_FIELD = {"cpu": "cpu_percent", "mem": "mem_percent", "gpu": "gpu_util_percent",
                  "gpu_mem": "gpu_mem_percent", "disk": "disk_percent", "net": "net_bytes_per_s"}


def _metrics_args(p):
    p.add_argument("name")
    p.add_argument("--stream", action="append", help="a stream (cpu, gpu, net...), a key or a glob; repeatable")
    p.add_argument("--since", default="10m", help="window start, as an age (default 10m)")
    p.add_argument("--until", default="0s", help="window end, as an age (default now)")
    p.add_argument("--resolution", choices=["auto", "raw", "1m", "1h"], default="auto",
                   help="raw samples, 1-minute or 1-hour rollups, or auto (raw up to 2 h, minutes up "
                        "to 7 days, hours beyond; a coarser tier past a tier's retention)")
    p.add_argument("--columns", action="store_true",
                   help="answer the window as columns (keys once, values packed; documents.MetricColumns) "
                        "instead of rows")


@request("metrics", args=_metrics_args)
async def metrics(ctx: Ctx, ns) -> list | MetricColumns:
    """A machine's samples over a window: [{ts, key: value, ...}] (or, with --columns, as columns)."""
    m = ctx.services.registry.machine(names.check(ns.name))
    if m is None:
        raise NotFound(f"no machine named {ns.name!r}")
    now = time.time()
    since, until = now - durations.parse(ns.since), now - durations.parse(ns.until)
    if since > until:
        raise UsageError("--since must be further back than --until")
    resolution = ns.resolution
    if resolution == "auto":
        st = ctx.services.settings
        resolution = history.pick_resolution(until - since, now - since, {
            "raw": st.raw_retention, "1m": st.rollup_retention, "1h": st.hour_retention})
    reads = ctx.services.metric_reads
    if ns.columns:
        cols = await reads.query_columns(m.id, since, until, ns.stream, resolution)
        if ns.stream:
            _check_streams(ctx, ns.name, ns.stream, cols.keys)
        return cols
    rows = await reads.query_rows(m.id, since, until, ns.stream, resolution)
    if ns.stream:
        _check_streams(ctx, ns.name, ns.stream,
                       {f for row_type in {type(r) for r in rows}
                        for f in row_type.__struct_encode_fields__ if f != "ts"})
    return rows


#: The streams agents send; what an unknown pattern is checked against when a
#: machine has not reported anything yet.
KNOWN_STREAMS = ("cpu", "mem", "fs", "disk", "net", "gpu", "agent")


def _check_streams(ctx: Ctx, name: str, patterns: list[str], answered) -> None:
    """A pattern that matches none of the machine's keys (its latest sample's, else the
    ``answered`` names of the window) is a usage error naming its streams."""
    latest = ctx.services.ingest.latest.get(name)
    keys = set(latest.keys) if latest is not None else set()
    if not keys:
        keys.update(answered)
    if keys:
        bad = [p for p in patterns if not select(keys, [p])]
        streams = sorted({split_key(k).stream for k in keys})
    else:  # nothing known of this machine yet: only a stream name agents send is accepted
        bad = [p for p in patterns if p not in KNOWN_STREAMS]
        streams = list(KNOWN_STREAMS)
    if bad:
        raise UsageError(f"{name} has no stream or key matching {', '.join(map(repr, bad))}; "
                         f"its streams are {', '.join(streams)} (a key or a glob such as 'gpu[0].*' works too)")


def _top_args(p):
    p.add_argument("--sort", choices=TOP_COLUMNS, default="name")
    p.add_argument("--state", action="append", choices=["live", "limbo", "dead"])


@request("top", args=_top_args)
async def top(ctx: Ctx, ns) -> list:
    """The fleet now: state and the latest CPU, memory, GPU, disk and network of each machine."""
    wanted = set(ns.state or ())
    svc = ctx.services
    def build(name: str, now: float):
        held_elsewhere = svc.registry.machine(name).held_by  # then the values here are old ones
        return fleet_row(svc.registry, name, None if held_elsewhere else svc.ingest.latest.get(name), now,
                         svc.endpoint.replica, svc.holds.holding(svc.registry.session(name)))

    merged = await fleet(ctx, build, lambda peer: peer.top())
    rows = [r for r in merged.rows if not wanted or r.state in wanted]
    if ns.sort in ("name", "state"):
        rows.sort(key=lambda r: (getattr(r, ns.sort), r.name))
    else:
        field = _SUMMARY_FIELD[ns.sort]
        rows.sort(key=lambda r: (getattr(r, field) is None, -(getattr(r, field) or 0), r.name))
    return rows
