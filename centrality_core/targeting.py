"""Which machines a command targets: pure, no I/O.

A selector is what an operator types: target expressions (names, globs such
as ``gpu-*``, hostlist ranges such as ``gpu[01-16]`` or ``node[1-3,7]``),
label filters (``-l pool=eval``, ``-l gpu``: has the label), or ``--all``.
``resolve`` matches it against views of the fleet and returns

* ``selected``: the machines to run on (live, and not drained unless asked),
* ``skipped``: matched machines that will not run, each with a reason code
  (``limbo``, ``dead``, ``drained``),
* ``unknown``: target expressions that named no known machine.

Rules: target expressions are a union; label filters narrow it (all must
match); with no target expression, labels filter the whole fleet. ``--all``
stands alone. Unhealthy machines are still selected: draining is the gate.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import hostlist
from .errors import UsageError

GLOB_CHARS = set("*?")

LIMBO, DEAD, DRAINED = "limbo", "dead", "drained"


@dataclass(frozen=True)
class MachineView:
    """What targeting needs to know of one machine."""

    name: str
    state: str  # live | limbo | dead
    labels: Mapping[str, str] = field(default_factory=dict)
    drained: bool = False


@dataclass(frozen=True)
class Selector:
    targets: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # KEY=VALUE, or KEY (the label is set)
    all: bool = False
    include_drained: bool = False

    @property
    def empty(self) -> bool:
        return not (self.targets or self.labels or self.all)

    def describe(self) -> str:
        """The selector as a person would type it, for the audit log."""
        if self.all:
            parts = ["--all"]
        else:
            parts = list(self.targets) + [f"-l {lab}" for lab in self.labels]
        if self.include_drained:
            parts.append("--include-drained")
        return " ".join(parts)


@dataclass
class Resolution:
    selected: list[str]
    skipped: list[tuple[str, str]]  # (name, reason code)
    unknown: list[str]

    @property
    def matched(self) -> int:
        return len(self.selected) + len(self.skipped)


def parse_label(text: str) -> tuple[str, str | None]:
    """``KEY=VALUE`` -> (KEY, VALUE); ``KEY`` -> (KEY, None): the label is set."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not key:
        raise UsageError(f"invalid label filter {text!r}: expected KEY=VALUE or KEY")
    return key, (value if sep else None)


def _match_expression(expr: str, names: Iterable[str], known: Mapping[str, object]) -> list[str]:
    """Names of known machines that ``expr`` denotes (may be empty)."""
    expr = expr.strip()
    if not expr:
        raise UsageError("empty target")
    if GLOB_CHARS & set(expr):
        return [n for n in names if fnmatch.fnmatchcase(n, expr)]
    try:
        expanded = hostlist.expand(expr)
    except UsageError as exc:
        if exc.code == "bad_hostlist" and "[" in expr:  # not a range: maybe a glob class (gpu[ab])
            found = [n for n in names if fnmatch.fnmatchcase(n, expr)]
            if found:
                return found
        raise
    return [n for n in expanded if n in known]


def resolve(machines: Iterable[MachineView], selector: Selector) -> Resolution:
    """Match ``selector`` against ``machines``. Raises ``UsageError`` for a bad selector."""
    if selector.empty:
        raise UsageError("name the machines: targets (names, globs, ranges like gpu[01-16]), "
                         "-l KEY=VALUE, or --all")
    if selector.all and (selector.targets or selector.labels):
        raise UsageError("--all cannot be combined with targets or labels")
    by_name = {m.name: m for m in machines}
    names = sorted(by_name, key=hostlist.natural_key)
    unknown: list[str] = []
    if selector.targets:
        chosen: dict[str, None] = {}
        for expr in selector.targets:
            found = _match_expression(expr, names, by_name)
            if not found:
                unknown.append(expr)
            elif "[" in expr or "," in expr:
                # a range may name some machines that do not exist: report those
                try:
                    missing = [n for n in hostlist.expand(expr) if n not in by_name]
                except UsageError:
                    missing = []
                if missing:
                    unknown.append(hostlist.fold(missing))
            chosen.update(dict.fromkeys(found))
        candidates = sorted(chosen, key=hostlist.natural_key)
    else:
        candidates = names
    for text in selector.labels:
        key, value = parse_label(text)
        candidates = [n for n in candidates
                      if key in by_name[n].labels and (value is None or by_name[n].labels[key] == value)]
    selected, skipped = [], []
    for n in candidates:
        m = by_name[n]
        if m.state == "dead":
            skipped.append((n, DEAD))
        elif m.state != "live":
            skipped.append((n, LIMBO))
        elif m.drained and not selector.include_drained:
            skipped.append((n, DRAINED))
        else:
            selected.append(n)
    return Resolution(selected, skipped, unknown)
