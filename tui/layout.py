"""How a table's columns share the terminal's width, as k9s and htop do. Pure.

Each column has a width it needs (``width``), how long it stays when the
terminal is narrow (``keep``: the lowest goes first, and ``KEEP_ALWAYS``
never goes), and how far it may grow on a wide terminal (``grow``: up to
``width + grow`` cells, or to the width of its content when the caller says
what that is). ``fit()`` drops columns until the rest fit, then hands the
cells left over to the growing columns, in order of ``grow_rank`` (a growing
column whose values are all shorter than its width shrinks to them). No
column ends off-screen, so nothing needs a horizontal scroll.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

KEEP_ALWAYS = 1000
GAP = 1  # cells between columns


@dataclass(frozen=True)
class Column:
    id: str
    title: str
    width: int
    sort: str = ""
    right: bool = False
    keep: int = KEEP_ALWAYS
    grow: int = 0  # extra cells it may take (0: fixed)
    grow_rank: int = 0  # lower grows first


@dataclass(frozen=True)
class Placed:
    column: Column
    width: int
    x: int  # first cell

    @property
    def id(self) -> str:
        return self.column.id


def fit(columns: list[Column], available: int, content: dict[str, int] | None = None) -> list[Placed]:
    """The columns shown in ``available`` cells, with their widths, in their order.

    ``content`` gives the width a growing column's longest value needs: it
    grows no further than that (a label column of short labels stays short).
    """
    content = content or {}
    # A growing column whose values are all shorter than its width shrinks to them (not below its title).
    columns = [replace(c, width=max(len(c.title), content[c.id])) if c.grow and c.id in content
               and content[c.id] < c.width else c for c in columns]
    shown = list(columns)

    def total(cols: list[Column]) -> int:
        return sum(c.width + GAP for c in cols)

    while total(shown) > available:
        droppable = [c for c in shown if c.keep < KEEP_ALWAYS]
        if not droppable:
            break
        # the least kept goes first; of equals, the rightmost
        worst = min(reversed(droppable), key=lambda c: c.keep)
        shown.remove(worst)
    widths = {c.id: c.width for c in shown}
    spare = available - total(shown)
    for c in sorted((c for c in shown if c.grow), key=lambda c: c.grow_rank):
        if spare <= 0:
            break
        want = min(c.width + c.grow, max(c.width, content.get(c.id, c.width + c.grow)))
        extra = min(spare, want - c.width)
        if extra > 0:
            widths[c.id] += extra
            spare -= extra
    placed, x = [], 0
    for c in shown:
        placed.append(Placed(c, widths[c.id], x))
        x += widths[c.id] + GAP
    return placed


def width_of(placed: list[Placed]) -> int:
    return sum(p.width + GAP for p in placed)


def shortest_fitting(variants: list[str | object], width: int, measure) -> object:
    """The first of ``variants`` (longest first) whose ``measure`` fits ``width``; else the last."""
    for v in variants:
        if measure(v) <= width:
            return v
    return variants[-1]
