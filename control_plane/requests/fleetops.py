"""``machines drain|undrain|label`` and ``health``: operator flags and healthchecks.

Drain and undrain take targets like ``exec`` (names, globs, ranges, ``-l``),
in any liveness state: a machine in limbo can be drained before it returns.
"""

from __future__ import annotations

import argparse

from centrality_core import hostlist, targeting, timefmt
from centrality_core.documents import Drained, Undrained
from centrality_core.errors import NotFound, UsageError
from centrality_core.names import check as check_name

from .. import fleetwide
from .dispatch import Ctx, request
from .exec import views

MAX_REASON = 1000


def _targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--label", action="append", default=[], help="KEY=VALUE (or KEY): all must match")
    p.add_argument("targets", nargs="*", help="names, globs or ranges (gpu[01-16])")


def _select(ctx: Ctx, ns) -> tuple[list[str], list[str]]:
    """Every machine the targets name, whatever its state; and unknown expressions."""
    selector = targeting.Selector(tuple(ns.targets), tuple(ns.label), include_drained=True)
    if selector.empty:
        raise UsageError("name the machines: names, globs, ranges like gpu[01-16], or -l KEY=VALUE")
    res = targeting.resolve(views(ctx), selector)
    names = res.selected + [n for n, _ in res.skipped]
    if not names:
        raise NotFound("no machine matches " + " ".join(ns.targets + [f"-l {x}" for x in ns.label]))
    return sorted(names, key=hostlist.natural_key), res.unknown


def _drain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", required=True, help="why (shown with the flag, kept in events)")
    _targets(p)


@request("machines drain", writes=True, args=_drain_args)
async def drain(ctx: Ctx, ns) -> Drained:
    """Drain machines: exec skips them until they are undrained."""
    reason = ns.reason.strip()
    if not reason:
        raise UsageError("--reason must say why")
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason is at most {MAX_REASON} characters")
    names, unknown = _select(ctx, ns)
    changed = [n for n in names if ctx.services.flags.drain(n, reason, ctx.actor)]
    return Drained(drained=changed, already=[n for n in names if n not in changed], unknown=unknown,
                   reason=reason)


@request("machines undrain", writes=True, args=_targets)
async def undrain(ctx: Ctx, ns) -> Undrained:
    """Undrain machines."""
    names, unknown = _select(ctx, ns)
    changed = [n for n in names if ctx.services.flags.undrain(n, ctx.actor)]
    return Undrained(undrained=changed, not_drained=[n for n in names if n not in changed], unknown=unknown)


def _label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("changes", nargs="+", metavar="KEY=VALUE|KEY-", help="set KEY=VALUE, remove KEY-")


LABEL_KEY_MAX, LABEL_VALUE_MAX, LABELS_MAX = 63, 256, 64


@request("machines label", writes=True, args=_label_args)
async def label(ctx: Ctx, ns) -> dict:
    """Set (KEY=VALUE) or remove (KEY-) operator labels of a machine."""
    if ns.name not in ctx.services.registry.records:
        check_name(ns.name)
        raise NotFound(f"no machine named {ns.name!r}")
    set_labels, remove = {}, []
    for change in ns.changes:
        if "=" in change:
            key, _, value = change.partition("=")
        elif change.endswith("-"):
            key, value = change[:-1], None
        else:
            raise UsageError(f"{change!r}: use KEY=VALUE to set a label, KEY- to remove it")
        if not key or len(key) > LABEL_KEY_MAX or not key.isprintable() or any(c in key for c in " =,"):
            raise UsageError(f"invalid label key {key!r}: 1-{LABEL_KEY_MAX} printable characters, "
                             "no spaces, '=' or ','")
        if value is None:
            remove.append(key)
        elif len(value) > LABEL_VALUE_MAX or not value.isprintable():
            raise UsageError(f"invalid value for label {key!r}: at most {LABEL_VALUE_MAX} printable characters")
        else:
            set_labels[key] = value
    current = ctx.services.registry.records[ns.name].labels
    if len({k: 1 for k in {**current, **set_labels} if k not in remove}) > LABELS_MAX:
        raise UsageError(f"a machine has at most {LABELS_MAX} labels")
    labels = ctx.services.flags.label(ns.name, set_labels, remove, ctx.actor)
    return {"name": ns.name, "labels": labels}


def _health_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="name", help="one machine, or several (default: all)")
    p.add_argument("--unhealthy", action="store_true", help="only unhealthy machines")


def health_json(ctx: Ctx, name: str) -> dict:
    m = ctx.services.registry.machine(name)
    f = ctx.services.registry.records[name].flags
    return {"name": name, "state": m.state.value, "unhealthy": f.unhealthy, "drained": f.drained,
            "checked_at": timefmt.iso(f.health_at), "checks": f.health,
            "failed": [c["name"] for c in f.failed_checks()], **ctx.services.flags.view(name)}


@request("health", args=_health_args)
async def health(ctx: Ctx, ns) -> list[dict]:
    """Healthcheck results per machine; unhealthy machines have a failed check.

    A machine's checks reach the replica its agent is connected to: those held by
    a peer are asked of that peer. A peer that does not answer leaves its machines
    as this replica last saw them, with ``error`` saying why."""
    registry = ctx.services.registry
    for name in ns.names:
        if name not in registry:
            check_name(name)
            raise NotFound(f"no machine named {name!r}")
    names = list(dict.fromkeys(ns.names)) or sorted(registry.names(), key=hostlist.natural_key)
    if ctx.from_peer:  # the replica asking wants what our agents told us
        return [health_json(ctx, n) for n in fleetwide.served_here(registry, names)]
    answers = await fleetwide.ask(ctx.services.peers, registry, names,
                                  lambda client, theirs: client.request("health", "--", *theirs))
    rows = {n: health_json(ctx, n) for n in answers.here}
    for replica, theirs in answers.rows.items():
        asked = set(answers.asked[replica])
        rows.update((r["name"], r) for r in theirs if isinstance(r, dict) and r.get("name") in asked)
    for theirs, why in answers.failed.values():
        rows.update((n, {**health_json(ctx, n), "error": why}) for n in theirs)
    for n in names:  # the peer no longer holds it (it moved meanwhile): as seen from here
        rows.setdefault(n, {**health_json(ctx, n), "error": "its replica did not report it"})
    out = [rows[n] for n in names]
    return [r for r in out if r["unhealthy"]] if ns.unhealthy else out
