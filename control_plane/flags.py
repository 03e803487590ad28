"""Operator flags of a machine, apart from its liveness: drained, unhealthy, labels.

A machine is live/limbo/dead (``lifecycle.py``) and, independently, may be
*drained* (by whom, when, why; ``exec`` skips it unless asked) and may be
*unhealthy* (its last round of healthchecks had a failure). Labels come from
two places: the agent's config (sent in every hello) and operators
(``machines label``); operator labels win on the same key, and a label an
operator removed stays removed (kept as ``None``) even if the agent's config
still sets it.

``records.Flags`` is the per-machine record (stored in the ``machines`` row);
``FlagKeeper`` changes flags on behalf of requests and agents, records each
change as an event (``drained``, ``undrained``, ``unhealthy``, ``healthy``,
``labelled``) and, when ``auto_drain`` is on, drains machines that fail their
checks and undrains them when they pass again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from centrality_core import protocol as p
from centrality_core.errors import NotFound
from centrality_core.lifecycle import Event

from .records import Record, effective_labels

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry

log = logging.getLogger("centrality.flags")

AUTO_DRAIN_ACTOR = "system:auto-drain"
MAX_REASON = 1000
#: A round of checks with the same outcome as the last (every check passing or failing as
#: before) is stored at most this often per machine. Every round is kept in memory, which is
#: what ``health`` and ``machines show`` read; the stored row is what a restart starts from.
#: Rounds come every minute from every machine: at 10,000 machines, storing each was 170
#: machine rows rewritten a second, a fifth of the store writer's time.
HEALTH_SAVE_EVERY = 600.0


def _describe_failures(checks: list[dict]) -> str:
    text = ", ".join(f"{c['name']}" + (f" ({c['detail']})" if c.get("detail") else "") for c in checks)
    return text[:MAX_REASON]


class FlagKeeper:
    """Changes flags in the registry's records; ``auto_drain`` (a server setting)
    drains a machine that turns unhealthy and undrains it when it passes again."""

    def __init__(self, registry: Registry, *, auto_drain: bool = False) -> None:
        self.registry = registry
        self.auto_drain = auto_drain

    def _record(self, name: str) -> Record:
        rec = self.registry.records.get(name)
        if rec is None:
            raise NotFound(f"no machine named {name!r}")
        return rec

    def _event(self, name: str, kind: str, reason: str, actor: str) -> None:
        m = self.registry.machine(name)
        self.registry.record_event(Event(kind, m.id, name, self.registry.clock(), None, None,
                                         reason[:MAX_REASON], actor))

    # ------------------------------------------------------------------ drain

    def drain(self, name: str, reason: str, actor: str, *, auto: bool = False) -> bool:
        """Drain ``name``; False if it already was (its reason is then left as it is)."""
        f = self._record(name).flags
        if f.drained:
            return False
        f.drained, f.drain_reason, f.drained_by = True, reason[:MAX_REASON], actor
        f.drained_at, f.auto_drained = self.registry.clock(), auto
        self._event(name, "drained", f.drain_reason, actor)
        return True

    def undrain(self, name: str, actor: str) -> bool:
        f = self._record(name).flags
        if not f.drained:
            return False
        reason = f"was drained by {f.drained_by}: {f.drain_reason}"
        f.drained, f.drain_reason, f.drained_by, f.drained_at, f.auto_drained = False, "", "", None, False
        self._event(name, "undrained", reason, actor)
        return True

    # ------------------------------------------------------------------ labels

    def label(self, name: str, set_labels: dict[str, str], remove: list[str], actor: str) -> dict:
        """Set and remove operator labels; returns the machine's labels now."""
        rec = self._record(name)
        f = rec.flags
        agent_labels = {k: v for k, v in rec.labels.items() if k not in f.operator_labels}
        before = dict(rec.labels)
        for key in remove:
            f.operator_labels[key] = None
        f.operator_labels.update(set_labels)
        rec.labels = effective_labels(agent_labels, f.operator_labels)
        if rec.labels != before:
            change = [f"{k}={v}" for k, v in sorted(set_labels.items())] + [f"-{k}" for k in remove]
            self._event(name, "labelled", " ".join(change), actor)
        return rec.labels

    # ------------------------------------------------------------------ health

    def health_report(self, name: str, report: p.HealthReport) -> None:
        """A round of healthchecks from an agent: store it; flag, event, hooks, auto-drain on change."""
        rec = self.registry.records.get(name)
        if rec is None:
            return
        f = rec.flags
        outcome = [(c["name"], c.get("ok")) for c in f.health]
        f.health = [msgspec.to_builtins(c) for c in report.checks]
        now = f.health_at = self.registry.clock()
        failed = f.failed_checks()
        was = f.unhealthy
        f.unhealthy = bool(failed)
        saved = True  # an event stores the machine's row too
        if f.unhealthy and not was:
            self._event(name, "unhealthy", "failed: " + _describe_failures(failed), "agent")
        elif was and not f.unhealthy:
            self._event(name, "healthy", "every check passed", "agent")
        elif (now - f.health_saved_at >= HEALTH_SAVE_EVERY
              or outcome != [(c["name"], c.get("ok")) for c in f.health]):
            self.registry.save(name)
        else:
            saved = False  # the same outcome as a round stored less than HEALTH_SAVE_EVERY ago
        if saved:
            f.health_saved_at = now
        if self.auto_drain and f.unhealthy != was:
            if f.unhealthy and not f.drained:
                self.drain(name, "failed healthchecks: " + _describe_failures(failed), AUTO_DRAIN_ACTOR,
                           auto=True)
            elif not f.unhealthy and f.drained and f.auto_drained:
                self.undrain(name, AUTO_DRAIN_ACTOR)

    # ------------------------------------------------------------------ views

    def view(self, name: str) -> dict:
        """The flags as requests answer them (JSON-ready)."""
        from centrality_core.timefmt import iso

        f = self._record(name).flags
        return {
            "drained": f.drained,
            "drain": ({"reason": f.drain_reason, "by": f.drained_by, "at": iso(f.drained_at),
                       "auto": f.auto_drained} if f.drained else None),
            "unhealthy": f.unhealthy,
            # unhealthy is whether a check failed (health_report): no need to look otherwise
            "failed_checks": [c["name"] for c in f.failed_checks()] if f.unhealthy else [],
        }
