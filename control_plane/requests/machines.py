"""``machines ls|show|forget`` and ``events``: the fleet as the registry holds it."""

from __future__ import annotations

import time

import msgspec

from centrality_core import durations, names, targeting, timefmt
from centrality_core.documents import Drain, Event, Forgotten, MachineDetail, MachineSummary
from centrality_core.hostlist import natural_key
from centrality_core.errors import Conflict, ConnectError, NotFound, StoreError
from centrality_core.lifecycle import Liveness

from ..views import holder
from .dispatch import Ctx, request
from .fleet import PEER_TIMEOUT, fleet


def summary(ctx: Ctx, name: str, now: float, cls: type[MachineSummary] = MachineSummary,
            **more) -> MachineSummary:
    reg = ctx.services.registry
    m, rec = reg.machine(name), reg.records[name]
    info = rec.info
    flags = ctx.services.flags.view(name)  # drained (+ by whom, why), unhealthy (+ failed checks)
    return cls(
        name=m.name,
        state=m.state.value,
        hostname=info.get("hostname", ""),
        last_heartbeat=timefmt.iso(m.last_heartbeat),
        heartbeat_age_s=round(now - m.last_heartbeat, 3),
        state_since=timefmt.iso(m.state_since),
        connected=m.conn is not None,
        labels=rec.labels,
        cpu_count=info.get("cpu_count", 0),
        memory_total_bytes=info.get("memory_total_bytes", 0),
        gpu_count=len(info.get("gpus", ())),
        agent_version=info.get("agent_version", ""),
        id=m.id,
        drained=flags["drained"],
        drain=Drain(**flags["drain"]) if flags["drain"] else None,
        unhealthy=flags["unhealthy"],
        failed_checks=flags["failed_checks"],
        metrics_held=ctx.services.holds.holding(m.conn),
        replica=holder(m, ctx.services.endpoint.replica),
        **more,
    )


def _ls_args(p):
    p.add_argument("--state", action="append", choices=[s.value for s in Liveness],
                   help="only machines in this state (repeatable)")
    p.add_argument("-l", "--label", action="append", default=[],
                   help="KEY=VALUE (or KEY: the label is set): only machines with it; all must match")


@request("machines ls", args=_ls_args)
async def machines_ls(ctx: Ctx, ns) -> list[MachineSummary]:
    """List machines with their state."""
    wanted = set(ns.state or ())
    labels = [targeting.parse_label(text) for text in ns.label]

    def has_labels(have: dict) -> bool:
        return all(k in have and (v is None or have[k] == v) for k, v in labels)

    merged = await fleet(ctx, lambda name, now: summary(ctx, name, now), lambda peer: peer.machines_ls())
    return sorted((r for r in merged.rows if (not wanted or r.state in wanted) and has_labels(r.labels)),
                  key=lambda r: natural_key(r.name))


def _name(p):
    p.add_argument("name")


def known(ctx: Ctx, name: str) -> None:
    """A name that cannot be a machine's is bad usage (exit 2); a valid one nobody has, not found (9)."""
    names.check(name)
    if name not in ctx.services.registry:
        raise NotFound(f"no machine named {name!r}")


_get = known


@request("machines show", args=_name)
async def machines_show(ctx: Ctx, ns) -> MachineDetail:
    """One machine: state, info, labels and recent events."""
    reg, peers = ctx.services.registry, ctx.services.peers
    m = reg.machine(names.check(ns.name))
    unanswered = False
    if ctx.from_peer:
        if m is None or m.conn is None:
            raise NotFound(f"machine {ns.name!r} is not connected to replica {ctx.services.endpoint.replica}")
    elif m is None:  # registered on a peer since this replica last read the store?
        found = [a for a in (await peers.each(lambda c: c.machine(ns.name), timeout=PEER_TIMEOUT)).values()
                 if isinstance(a, MachineDetail)]
        if found:
            return max(found, key=lambda d: d.state == "live")
    elif m.conn is None and m.held_by:  # its holder's answer is authoritative
        answer = await peers.ask(m.held_by, lambda c: c.machine(ns.name), timeout=PEER_TIMEOUT) \
            if m.held_by in peers else ConnectError(f"replica {m.held_by} is not running")
        if isinstance(answer, MachineDetail):
            return answer
        unanswered = not isinstance(answer, NotFound)
    _get(ctx, ns.name)
    events = await stored_events(ctx, machine=ns.name, limit=20)
    rec = reg.records[ns.name]
    detail = summary(ctx, ns.name, time.time(), MachineDetail, info=rec.info,
                     registered_at=timefmt.iso(rec.registered_at),
                     key_fingerprint=reg.machine(ns.name).owner, events=events)
    # its holder did not answer: the machine as the store last had it
    return msgspec.structs.replace(detail, from_store=True) if unanswered and detail.state == "live" else detail


def _forget_args(p):
    p.add_argument("name")
    p.add_argument("--no-remove", dest="remove", action="store_false",
                   help="only declare it dead: a machine already dead stays listed")


@request("machines forget", writes=True, args=_forget_args)
async def machines_forget(ctx: Ctx, ns) -> Forgotten:
    """Declare a machine in limbo dead; remove a dead one (its name becomes free)."""
    _get(ctx, ns.name)
    try:
        events = ctx.services.registry.forget(ns.name, ctx.actor, remove=ns.remove)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    m = ctx.services.registry.machine(ns.name)
    return Forgotten(name=ns.name, state=m.state.value if m is not None else "removed", changed=bool(events))


@request("machines release", writes=True, args=_name)
async def machines_release(ctx: Ctx, ns) -> Forgotten:
    """Free a machine's name from the key that registered it (a re-installed machine)."""
    _get(ctx, ns.name)
    events = ctx.services.registry.release(ns.name, ctx.actor)
    return Forgotten(name=ns.name, state=ctx.services.registry.machine(ns.name).state.value,
                     changed=bool(events))


async def stored_events(ctx: Ctx, **query) -> list[Event]:
    """Events from the store, after writing what is queued (so a reader sees its own changes)."""
    try:
        await ctx.services.writer.flush()
    except StoreError:
        pass  # the read below reports the store's state
    return [event_json(r) for r in await ctx.services.db(ctx.services.store.events, **query)]


def event_json(row: dict) -> Event:
    return Event(ts=timefmt.iso(row["ts"]), kind=row["kind"], machine=row["machine_name"],
                 from_=row["from_state"], to=row["to_state"], reason=row["reason"], actor=row["actor"],
                 machine_id=row["machine_id"])


def _events_args(p):
    p.add_argument("--machine", help="only events of this machine")
    p.add_argument("--since", help="only events newer than this (e.g. 10m, 2h)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (newest first)")


@request("events", args=_events_args)
async def events(ctx: Ctx, ns) -> list[Event]:
    """Lifecycle and operator events, newest first."""
    since = time.time() - durations.parse(ns.since) if ns.since else None
    limit = max(1, min(ns.limit, 10_000))
    if ns.machine is not None:
        names.check(ns.machine)
    rows = await stored_events(ctx, machine=ns.machine, since=since, limit=limit)
    if ns.machine is not None and not rows and ns.machine not in ctx.services.registry:
        # a machine removed from the registry keeps its stored events, so only a name with neither is unknown
        if not await stored_events(ctx, machine=ns.machine, limit=1):
            raise NotFound(f"no machine named {ns.machine!r}")
    return rows
