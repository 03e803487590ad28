"""What drain, undrain and forget do to a set of machines, and how to say
what came back. Pure: the screens ask, the control plane decides.

The set is the one exec uses (``execrun.selection``): the marked machines,
or else the one under the cursor. ``machines forget`` removes a dead
machine's record (its row leaves the dashboard, its name is free) and
declares a machine in limbo dead; a live machine cannot be forgotten, so
it is left out before asking, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from centrality_core import hostlist
from centrality_core.sanitize import one_line


def folded(names) -> str:
    return one_line(hostlist.fold(list(names)), 300) or "-"


@dataclass
class ForgetPlan:
    remove: list[str] = field(default_factory=list)  # dead: the record goes
    declare: list[str] = field(default_factory=list)  # limbo: declared dead
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def names(self) -> list[str]:
        return sorted([*self.remove, *self.declare], key=hostlist.natural_key)


def forget_plan(rows: Mapping[str, object], names: list[str]) -> ForgetPlan:
    """Which of ``names`` (``model.Machine`` rows) ``machines forget`` would remove, declare dead, or skip."""
    plan = ForgetPlan()
    for name in sorted(names, key=hostlist.natural_key):
        m = rows.get(name)
        if m is None:
            plan.skipped.append((name, "no longer in the fleet"))
        elif m.state == "dead":
            plan.remove.append(name)
        elif m.state == "limbo":
            plan.declare.append(name)
        else:
            plan.skipped.append((name, f"{m.state}: only dead or limbo machines can be forgotten"))
    return plan


def forget_question(plan: ForgetPlan) -> list[tuple[str, str]]:
    """The confirmation's lines, as (text, style) pieces."""
    parts: list[tuple[str, str]] = []
    if plan.remove:
        parts += [("Remove ", ""), (folded(plan.remove), "bold"), (f" ({len(plan.remove)} dead)", "$text-error"),
                  (": the record goes and the name is free; its stored metrics and events are kept until "
                   "their retention.\n", "")]
    if plan.declare:
        parts += [("Declare ", ""), (folded(plan.declare), "bold"), (f" ({len(plan.declare)} in limbo)", "$text-warning"),
                  (" dead: it stays listed as dead (forget it again to remove it).\n", "")]
    if plan.skipped:
        parts += [("Skipped ", "$text-muted"), (folded(n for n, _ in plan.skipped), "bold"),
                  (f" ({plan.skipped[0][1]})" if len({w for _, w in plan.skipped}) == 1 else " (see their state)",
                   "$text-muted")]
    return parts


def drain_text(r: Drained, reason: str) -> tuple[str, str]:
    """(message, severity) for the answer of ``machines drain``."""
    return _flag_text(r, ("drained", "drained"), ("already", "already drained"), f" ({one_line(reason, 200)})")


def undrain_text(r: Undrained) -> tuple[str, str]:
    """(message, severity) for the answer of ``machines undrain``."""
    return _flag_text(r, ("undrained", "undrained"), ("not_drained", "not drained"))


def _flag_text(r: Drained | Undrained, done: tuple[str, str], unchanged: tuple[str, str], why: str = "") -> tuple[str, str]:
    """``done``/``unchanged``: (answer field, words) of the machines changed and left as they were."""
    changed = _names(r, done[0])
    parts = [f"{done[1]} {len(changed)}: {folded(changed)}{why}"] if changed else []
    for field, words in (unchanged, ("unknown", "unknown")):
        names = _names(r, field)
        if names:
            parts.append(f"{words}: {folded(names)}")
    return "; ".join(parts) or "nothing changed", "information" if changed else "warning"


def forget_text(plan: ForgetPlan, failed: dict[str, str], kept: list[str] | None = None) -> tuple[str, str]:
    """``kept``: dead machines the control plane accepted to forget but still lists (one that keeps
    dead machines' records)."""
    kept = kept or []
    removed = [n for n in plan.remove if n not in failed and n not in kept]
    declared = [n for n in plan.declare if n not in failed]
    parts = []
    if removed:
        parts.append(f"removed {len(removed)}: {folded(removed)}")
    if declared:
        parts.append(f"declared dead {len(declared)}: {folded(declared)}")
    if kept:
        parts.append(f"still listed {folded(kept)}: the control plane kept their records")
    for why in sorted(set(failed.values())):
        parts.append(f"not forgotten {folded(n for n, w in failed.items() if w == why)}: {one_line(why, 200)}")
    return "; ".join(parts) or "nothing changed", "error" if failed else "warning" if kept else "information"


def _names(r: Drained | Undrained, field: str) -> list[str]:
    return [one_line(n, 64) for n in getattr(r, field)]
