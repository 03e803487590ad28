"""One fleet view from several replicas (pure).

A replica serves its own machines from memory; for the others it has what the
shared store last recorded (state, heartbeat saved every 30 s, no latest
values) and the answers of its peers, each of which answers for the machines
whose agents are connected to it. ``merge`` makes one row per machine:

1. a machine served here: this replica's row;
2. else a machine a peer answered for: that peer's row (if two peers claim it,
   the one where it is live);
3. else the store's row, marked ``from_store`` when the replica holding it did
   not answer (it may be gone: its machines stay shown as the store has them
   until a survivor moves them to limbo, one lease later).

Rows are the operator documents (``FleetRow``, ``MachineSummary``): anything
with ``name``, ``state``, ``replica`` and ``from_store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

import msgspec

R = TypeVar("R")


@dataclass
class Merged(Generic[R]):
    #: One row per machine, in no particular order.
    rows: list[R]
    #: Peers that did not answer: name -> why.
    unanswered: dict[str, str] = field(default_factory=dict)

    def held_unanswered(self) -> dict[str, int]:
        """How many rows are the store's, per replica that holds them and did not answer."""
        counts: dict[str, int] = {}
        for r in self.rows:
            if r.from_store:
                counts[r.replica] = counts.get(r.replica, 0) + 1
        return counts


def why(error: BaseException) -> str:
    return getattr(error, "reason", "") or str(error) or type(error).__name__


def merge(own: Iterable[R], stored: Iterable[R], answers: Mapping[str, Iterable[R] | BaseException]) -> Merged[R]:
    """``own``: rows of machines served here; ``stored``: rows of the others as the store has
    them, ``replica`` naming the replica that holds the machine ("" none); ``answers``: each
    peer's rows, or the error that kept it from answering."""
    answered = {p for p, a in answers.items() if not isinstance(a, BaseException)}
    rows: dict[str, R] = {}
    for r in stored:
        if r.replica and r.replica not in answered and r.state == "live":
            r = msgspec.structs.replace(r, from_store=True)
        rows[r.name] = r
    claimed: dict[str, R] = {}
    for peer in sorted(answered):
        for r in answers[peer]:
            other = claimed.get(r.name)
            if other is None or (other.state != "live" and r.state == "live"):
                claimed[r.name] = r
    rows.update(claimed)
    for r in own:
        rows[r.name] = r
    return Merged(list(rows.values()),
                  {p: why(a) for p, a in answers.items() if isinstance(a, BaseException)})


def count(rows: Iterable, states: Iterable[str]) -> dict[str, int]:
    """Rows per state (every state in ``states`` present, zero or not)."""
    counts = {s: 0 for s in states}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return counts


def replicas_section(leases: Iterable, held: Mapping[str, int], answers: Mapping[str, Any],
                     here: str, here_agents: int, now: float, iso: Callable[[float], str | None]) -> list[dict]:
    """``status``'s ``replicas``: each replica not reaped (``store.replicas.Lease``, reaped
    time), with how many machines it holds, its lease, and whether it answered (``answers``:
    each peer's ``status`` map, or the error that kept it)."""
    out = []
    for lease, reaped_at in leases:
        if reaped_at is not None:
            continue
        answer = answers.get(lease.name)
        row = {"name": lease.name, "address": lease.address, "self": lease.name == here,
               "lease": "current" if lease.expires_at >= now else "lapsed",
               "lease_expires": iso(lease.expires_at), "lease_left_s": round(lease.expires_at - now, 1),
               "machines_held": held.get(lease.name, 0), "agents_connected": None,
               "reachable": False, "healthy": None, "version": None, "error": None}
        if lease.name == here:
            row.update(agents_connected=here_agents, reachable=True)
        elif isinstance(answer, dict):
            row.update(agents_connected=answer.get("agents_connected"), reachable=True,
                       healthy=answer.get("healthy"), version=answer.get("version"))
        elif isinstance(answer, BaseException):
            row["error"] = why(answer)
        else:
            row["error"] = "its lease lapsed: not asked" if row["lease"] == "lapsed" else "not asked"
        out.append(row)
    return out
