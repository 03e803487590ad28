"""What the registry keeps of a machine beyond its liveness: its info and labels
(``Record``) and its operator flags (``Flags``: drained, unhealthy, operator
labels; ``flags.FlagKeeper`` changes them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Flags:
    drained: bool = False
    drain_reason: str = ""
    drained_by: str = ""
    drained_at: float | None = None
    #: Drained by auto-drain (so a passing check may undrain it; an operator's drain stays).
    auto_drained: bool = False
    unhealthy: bool = False
    health: list[dict] = field(default_factory=list)  # the last round: [{name, ok, detail, duration}]
    health_at: float | None = None
    #: Labels set by operators; ``None`` marks a label an operator removed.
    operator_labels: dict[str, str | None] = field(default_factory=dict)
    #: When a round of checks was last queued for the store (not stored itself: flags.py).
    health_saved_at: float = field(default=float("-inf"), compare=False)

    def columns(self) -> dict:
        """The ``machines`` columns these flags are stored in."""
        return {"drained": self.drained, "drain_reason": self.drain_reason, "drained_by": self.drained_by,
                "drained_at": self.drained_at, "auto_drained": self.auto_drained,
                "unhealthy": self.unhealthy, "health": self.health, "health_at": self.health_at,
                "operator_labels": self.operator_labels}

    @classmethod
    def from_row(cls, row: dict) -> Flags:
        return cls(drained=bool(row.get("drained")), drain_reason=row.get("drain_reason") or "",
                   drained_by=row.get("drained_by") or "", drained_at=row.get("drained_at"),
                   auto_drained=bool(row.get("auto_drained")), unhealthy=bool(row.get("unhealthy")),
                   health=list(row.get("health") or []), health_at=row.get("health_at"),
                   operator_labels=dict(row.get("operator_labels") or {}))

    def failed_checks(self) -> list[dict]:
        return [c for c in self.health if not c.get("ok")]


def effective_labels(agent_labels: dict, operator_labels: dict) -> dict:
    """What targeting sees: the agent's labels, overridden (or removed) by the operators'."""
    merged = {**agent_labels, **operator_labels}
    return {k: v for k, v in merged.items() if v is not None}


@dataclass
class Record:
    """What the registry knows of a machine beyond its liveness."""

    info: dict
    labels: dict = field(default_factory=dict)
    registered_at: float = 0.0
    dirty: bool = False  # last_heartbeat changed since the last periodic save
    flags: Flags = field(default_factory=Flags)  # drained, unhealthy, operator labels
