"""``subscribe``: live pushes for dashboards, one JSON document per line.

First line: ``{"type": "snapshot", "machines": [row...], "events": [...]}``.
Then, at most once per ``--interval``, only when something changed:
``{"type": "update", "machines": [changed rows], "removed": [names], "events": [new events]}``.
With ``--machine NAME``, also ``{"type": "machine", "name", "ts", "values", "text"}``
whenever that machine sends new samples (``Snapshot``, ``Update`` and
``MachineLatest`` of ``centrality_core.documents``). With ``--values`` (what the
Prometheus exporter reads), each row also carries the machine's latest sample,
packed (``shape``, ``values``: see ``control_plane/shapes.py``), and a
document carries the key lists (``shapes``) its rows use for the first time.
Rows are ``views.fleet_row``; events are shaped like ``centrality events
--json``. A client that reads slowly is not flooded: while its channel is
backed up, changes keep accumulating and are sent as one update when it
catches up.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from centrality_core import durations
from centrality_core.documents import Event, MachineLatest, Snapshot, Update
from centrality_core.errors import NotFound, UsageError
from centrality_core.names import check as check_name

from ..registry import event_row
from ..shapes import ShapeTable, add_values
from ..views import fleet_row
from .dispatch import Ctx, request
from .machines import event_json, stored_events

BACKLOG_LIMIT = 4 * 1024 * 1024  # bytes queued on the channel before we hold back


def _args(p):
    p.add_argument("--interval", default="1s", help="at most one update per interval (default 1s)")
    p.add_argument("--machine", help="also push this machine's latest values and text")
    p.add_argument("--events", type=int, default=50, help="recent events in the snapshot")
    p.add_argument("--no-fleet", action="store_true",
                   help="with --machine: send only that machine's documents (the dashboard's machine screen)")
    p.add_argument("--values", action="store_true",
                   help="rows carry the machine's latest sample, packed (shape + float64 values)")


@request("subscribe", args=_args)
async def subscribe(ctx: Ctx, ns) -> None:
    """Stream the fleet: a snapshot, then changed rows and new events as they happen."""
    svc = ctx.services
    interval = durations.parse(ns.interval)
    if interval < 0.05:
        raise UsageError("--interval must be at least 50ms")
    if ns.machine and ns.machine not in svc.registry:
        check_name(ns.machine)
        raise NotFound(f"no machine named {ns.machine!r}")
    if ns.no_fleet:
        if not ns.machine:
            raise UsageError("--no-fleet needs --machine")
        machine_ts = 0.0
        while True:
            machine_ts = _push_machine(ctx, ns.machine, machine_ts)
            await asyncio.sleep(interval)
    pending_events: list[Event] = []
    shapes = ShapeTable() if ns.values else None

    def row(name: str, now: float):
        latest = svc.ingest.latest.get(name)
        r = fleet_row(svc.registry, name, latest, now)
        # --values (the exporter): the row plus its packed sample, as a map (see shapes.py)
        return add_values(msgspec.structs.asdict(r), latest, shapes) if shapes else r

    def emit(doc: Snapshot | Update) -> None:
        ctx.emit(shapes.take({"type": doc.__struct_config__.tag, **msgspec.structs.asdict(doc)})
                 if shapes else doc)

    remove_listener = svc.registry.add_listener(
        lambda events: pending_events.extend(event_json(event_row(e)) for e in events))
    try:
        rev = svc.changes.counter
        known = set(svc.registry.names())
        now = time.time()
        recent = await stored_events(ctx, limit=max(0, min(ns.events, 1000)))
        pending_events.clear()  # they are in the snapshot's events now
        emit(Snapshot(ts=now, machines=[row(n, now) for n in sorted(known)], events=recent))
        machine_ts = _push_machine(ctx, ns.machine, 0.0)
        while True:
            await asyncio.sleep(interval)
            if ctx.backlog() > BACKLOG_LIMIT:
                continue  # the client is behind: let changes coalesce
            changed = svc.changes.since(rev)
            rev = svc.changes.counter
            now = time.time()
            current = set(svc.registry.names())
            rows = [row(n, now) for n in changed if n in current]
            removed = sorted(known - current)
            known = current
            if rows or removed or pending_events:
                events, pending_events[:] = list(pending_events), []
                emit(Update(ts=now, machines=rows, removed=removed, events=events[::-1]))
            machine_ts = _push_machine(ctx, ns.machine, machine_ts)
    finally:
        remove_listener()


def _push_machine(ctx: Ctx, name: str | None, last_ts: float) -> float:
    latest = ctx.services.ingest.latest.get(name) if name else None
    if latest is None or latest.ts <= last_ts:
        return last_ts
    ctx.emit(MachineLatest(name=name, ts=latest.ts, values=latest.values, text=latest.text,
                           text_ts=latest.text_ts, gpu_processes=latest.gpu_processes))
    return latest.ts
