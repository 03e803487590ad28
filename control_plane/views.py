"""What operators see of a machine: one row built from the registry and the
machine's latest metrics (``ingest.Latest``), shared by ``top``, ``subscribe`` and the dashboard, plus the
change counter that lets subscriptions send only rows that changed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from centrality_core.documents import FIGURES, FleetRow
from centrality_core.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from .ingest import Latest
    from .registry import Registry


class Changes:
    """A revision per machine name, bumped on every change of its row."""

    def __init__(self) -> None:
        self.counter = 0
        self.revs: dict[str, int] = {}

    def touch(self, name: str) -> None:
        self.counter += 1
        self.revs[name] = self.counter

    def since(self, rev: int) -> list[str]:
        return [name for name, r in self.revs.items() if r > rev]


def holder(m, here: str) -> str:
    """The replica holding machine ``m``: this one (``here``) when its agent is connected here."""
    return here if m.conn is not None else m.held_by


def fleet_row(registry: Registry, name: str, latest: Latest | None, now: float | None = None,
              here: str = "", held: bool = False) -> FleetRow:
    """One machine as a row of the fleet table (``documents.FleetRow``); ``latest``: its newest
    values, if any; ``here``: this control plane's replica name (the holder of what it serves);
    ``held``: its agent holds its metrics back (holds.py)."""
    now = time.time() if now is None else now
    m = registry.machine(name)
    rec = registry.records[name]
    s = latest.summary if latest else None
    figures = {f: (round(v, 2) if (v := getattr(s, f)) is not None else None) for f in FIGURES} if s else {}
    return FleetRow(
        name=name,
        state=m.state.value,
        hostname=rec.info.get("hostname", ""),
        labels=rec.labels,
        gpu_count=len(rec.info.get("gpus", ())),
        cpu_count=rec.info.get("cpu_count", 0),
        last_heartbeat=iso(m.last_heartbeat),
        heartbeat_age_s=round(now - m.last_heartbeat, 3),
        sample_ts=iso(latest.ts) if latest else None,
        sample_age_s=round(now - latest.ts, 3) if latest else None,
        drained=rec.flags.drained,
        unhealthy=rec.flags.unhealthy,
        metrics_held=held,
        **figures,
        replica=holder(m, here),
    )
