"""Grouping machines that answered the same: ``gpu[01-12]: same output``.

Pure. Names are folded into hostlist expressions with ClusterShell's NodeSet
(``hostlist.fold``), the way ``clush -b`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping

from . import hostlist


@dataclass(frozen=True)
class Group:
    key: Hashable  # what the machines share (an output, a status...)
    names: tuple[str, ...]  # sorted naturally
    folded: str  # the names as one hostlist expression

    def __len__(self) -> int:
        return len(self.names)


def group(values: Mapping[str, Hashable]) -> list[Group]:
    """Machines grouped by identical value; biggest group first, then by first name."""
    by_value: dict[Hashable, list[str]] = {}
    for name, value in values.items():
        by_value.setdefault(value, []).append(name)
    groups = []
    for value, names in by_value.items():
        names.sort(key=hostlist.natural_key)
        groups.append(Group(value, tuple(names), hostlist.fold(names)))
    groups.sort(key=lambda g: (-len(g.names), hostlist.natural_key(g.names[0])))
    return groups
