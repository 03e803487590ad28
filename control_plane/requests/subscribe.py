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

On a replica, an operator's subscription is the whole fleet's: the handler
follows one ``subscribe`` stream per peer (``peerfeeds.py``; the peer sends
the rows of the machines whose agents are connected to it) and merges them
with its own rows by machine, the holder's row winning. A peer that drops out
is subscribed again; meanwhile its machines are the store's rows, marked
``from_store``. ``--values`` carries packed samples of this replica's own
machines only.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from centrality_core import durations
from centrality_core.documents import Event, MachineLatest, Snapshot, Update
from centrality_core.errors import NotFound, UsageError
from centrality_core.names import check as check_name

from ..peerfeeds import PeerFeeds
from ..registry import event_row
from ..shapes import ShapeTable, add_values
from ..views import fleet_row
from .dispatch import Ctx, request
from .fleet import PEER_TIMEOUT
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
    if ns.machine and ns.machine not in svc.registry and not ctx.from_peer:
        check_name(ns.machine)
        raise NotFound(f"no machine named {ns.machine!r}")
    if ns.no_fleet and not ns.machine:
        raise UsageError("--no-fleet needs --machine")
    feeds = None
    if not ctx.from_peer and svc.peers.names():
        feeds = PeerFeeds(svc.peers, ns.interval, machine=ns.machine, no_fleet=ns.no_fleet)
        following = asyncio.create_task(feeds.run(), name="subscribe-peers")
    try:
        if ns.no_fleet:
            machine_ts = 0.0
            while True:
                machine_ts = _push_machine(ctx, ns.machine, machine_ts, feeds)
                await asyncio.sleep(interval)
        await _fleet(ctx, ns, interval, feeds)
    finally:
        if feeds is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def _fleet(ctx: Ctx, ns, interval: float, feeds: PeerFeeds | None) -> None:
    svc = ctx.services
    here = svc.endpoint.replica
    pending_events: list[Event] = []
    shapes = ShapeTable() if ns.values else None

    def mine() -> set[str]:  # asked by a peer: only the machines whose agents are connected here
        return {m.name for m in svc.registry.machines() if m.conn is not None}

    def fleet_names() -> set[str]:
        if ctx.from_peer:
            return mine()
        names = set(svc.registry.names())
        return names | feeds.names() if feeds is not None else names

    def row(name: str, now: float):
        r, latest = _merged_row(svc, name, now, here, feeds)
        # --values (the exporter): the row plus its packed sample, as a map (see shapes.py)
        return add_values(msgspec.structs.asdict(r), latest, shapes) if shapes and r is not None else r

    def emit(doc: Snapshot | Update) -> None:
        ctx.emit(shapes.take({"type": doc.__struct_config__.tag, **msgspec.structs.asdict(doc)})
                 if shapes else doc)

    remove_listener = svc.registry.add_listener(
        lambda events: pending_events.extend(event_json(event_row(e)) for e in events))
    try:
        if feeds is not None:  # the peers' snapshots first, so the first document is the whole fleet
            deadline = time.monotonic() + PEER_TIMEOUT
            while not feeds.settled() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            feeds.take()
        rev = svc.changes.counter
        known = fleet_names()
        now = time.time()
        recent = await stored_events(ctx, limit=max(0, min(ns.events, 1000))) if ns.events > 0 else []
        pending_events.clear()  # they are in the snapshot's events now
        rows = [r for n in sorted(known) if (r := row(n, now)) is not None]
        emit(Snapshot(ts=now, machines=rows, events=recent))
        machine_ts = _push_machine(ctx, ns.machine, 0.0, feeds)
        while True:
            await asyncio.sleep(interval)
            if ctx.backlog() > BACKLOG_LIMIT:
                continue  # the client is behind: let changes coalesce
            changed = set(svc.changes.since(rev))
            rev = svc.changes.counter
            if feeds is not None:
                from_peers, peer_events = feeds.take()
                changed |= from_peers
                pending_events.extend(peer_events)
            now = time.time()
            current = fleet_names()
            if ctx.from_peer:  # a machine whose agent left: its last row here, once
                changed = (changed & current) | (known - current)
                removed = sorted(n for n in known - current if n not in svc.registry)
            else:
                removed = sorted(known - current)
                changed &= current
            rows = [r for n in sorted(changed) if n not in removed and (r := row(n, now)) is not None]
            known = current
            if rows or removed or pending_events:
                events, pending_events[:] = list(pending_events), []
                emit(Update(ts=now, machines=rows, removed=removed, events=events[::-1]))
            machine_ts = _push_machine(ctx, ns.machine, machine_ts, feeds)
    finally:
        remove_listener()


def _merged_row(svc, name: str, now: float, here: str, feeds: PeerFeeds | None):
    """Machine ``name`` as this replica shows it, and the latest sample it has of it.

    Its own row if served here; else the row of the peer serving it; else the last
    word of the peer that held it (until this registry reads the store again); else
    the store's, marked ``from_store`` while its holder's stream is down."""
    m = svc.registry.machine(name)
    live = feeds.live_row(name) if feeds is not None and (m is None or m.conn is None) else None
    if live is not None:
        return live, None
    if m is None:
        return None, None
    if m.held_by and feeds is not None and m.held_by in feeds.up:
        last = feeds.left.get(m.held_by, {}).get(name)
        if last is not None:
            return last, None
    latest = None if m.held_by else svc.ingest.latest.get(name)  # held elsewhere: ours is old
    r = fleet_row(svc.registry, name, latest, now, here, svc.holds.holding(m.conn))
    if m.held_by and m.state.value == "live" and (feeds is None or m.held_by not in feeds.up):
        r.from_store = True
    return r, latest


def _push_machine(ctx: Ctx, name: str | None, last_ts: float, feeds: PeerFeeds | None = None) -> float:
    """Push ``name``'s newest sample if it is newer than ``last_ts``: this replica's, or a
    peer's (the one serving the machine has the newest)."""
    if not name:
        return last_ts
    latest = ctx.services.ingest.latest.get(name)
    doc = None
    if latest is not None and latest.ts > last_ts:
        doc = MachineLatest(name=name, ts=latest.ts, values=latest.values, text=latest.text,
                            text_ts=latest.text_ts, gpu_processes=latest.gpu_processes)
    if feeds is not None:
        theirs = feeds.newest_machine()
        if theirs is not None and theirs.ts > max(last_ts, doc.ts if doc is not None else 0.0):
            doc = theirs
    if doc is None:
        return last_ts
    ctx.emit(doc)
    return doc.ts
