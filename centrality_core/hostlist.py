"""Hostlist expressions (``gpu[01-16]``, ``node[1-3,7]``) through ClusterShell's NodeSet.

Ranges are parsed and folded by ClusterShell (the same syntax as clush, pdsh
and Slurm), never by hand here. Two things are added around it:

* a size bound checked *before* ClusterShell sees the text: NodeSet expands
  ``x[1-100000000]`` eagerly and takes minutes doing it, which a request must
  not be able to make the control plane do;
* group syntax (``@rack1``) is refused: groups are labels here (``-l rack=1``).

ClusterShell is imported lazily, so the agent and ``centrality --help`` do not
load it. ``fold`` falls back to a plain sorted list when it is not installed.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

from .errors import UsageError

#: Most names one expression may expand to.
MAX_EXPANSION = 100_000

_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_PART = re.compile(r"^\s*(\d+)(?:\s*-\s*(\d+)(?:\s*/\s*(\d+))?)?\s*$")


def _nodeset_class():
    from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

    return NodeSet, RESOLVER_NOGROUP, NodeSetException


def estimate(expr: str) -> int:
    """An upper bound of the number of names ``expr`` expands to (0 if unreadable)."""
    total = 0
    depth = 0
    term = []
    # Split on the top-level operators of NodeSet syntax: , ! & ^ (outside brackets).
    terms = []
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth == 0 and ch in ",!&^":
            terms.append("".join(term))
            term = []
        else:
            term.append(ch)
    terms.append("".join(term))
    for t in terms:
        size = 1
        for group in _BRACKET.findall(t):
            count = 0
            for part in group.split(","):
                m = _PART.match(part)
                if not m:
                    return 0  # let ClusterShell report the syntax error
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) is not None else lo
                step = int(m.group(3) or 1) or 1
                count += max(0, (hi - lo) // step + 1)
            size *= max(count, 1)
        total += size
    return total


def expand(expr: str) -> list[str]:
    """The names of a hostlist expression, in NodeSet order. Raises ``UsageError``."""
    if "@" in expr:
        raise UsageError(f"{expr!r}: node groups (@group) are not supported; use labels (-l KEY=VALUE)")
    if estimate(expr) > MAX_EXPANSION:
        raise UsageError(f"{expr!r} expands to more than {MAX_EXPANSION:,} names", code="too_many_names")
    NodeSet, nogroup, NodeSetException = _nodeset_class()
    try:
        ns = NodeSet(expr, resolver=nogroup)
        if len(ns) > MAX_EXPANSION:
            raise UsageError(f"{expr!r} expands to more than {MAX_EXPANSION:,} names", code="too_many_names")
        return list(ns)
    except NodeSetException as exc:
        raise UsageError(f"invalid hostlist {expr!r}: {exc}", code="bad_hostlist") from None


def fold(names: Iterable[str]) -> str:
    """Names folded into one hostlist expression: ``gpu[01-12],cpu-03``."""
    names = list(names)
    if not names:
        return ""
    try:
        NodeSet, nogroup, _ = _nodeset_class()
    except ImportError:
        return ",".join(sorted(names))
    return str(NodeSet.fromlist(names, resolver=nogroup))


_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=1 << 16)
def natural_key(name: str) -> tuple:
    """Sort key that puts ``gpu2`` before ``gpu10``. Cached: the control plane sorts the
    same fleet's names for every listing (10,000 of them for each ``machines ls``)."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))
