"""Events, newest first, on the Line API (a busy fleet makes thousands)."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip

from .. import format as fmt
from ..layout import Column, Placed, fit as fit_columns, width_of
from ..model import Event
from .table import LineTable, fit

#: Event kinds that mean trouble, and those that mean recovery.
BAD = {"disconnected", "heartbeat_missed", "expired", "registration_refused", "forgotten", "unhealthy",
       "retired"}
GOOD = {"registered", "reconnected", "healthy", "undrained"}

#: On a narrow terminal the absolute time goes first (AGO stays), then the state change, then who;
#: on a wide one, who and the machine grow to their longest value and the reason takes the rest.
_COLUMNS = (Column("when", "TIME (UTC)", 19, keep=20), Column("ago", "AGO", 5, right=True),
            Column("machine", "MACHINE", 12, grow=20, grow_rank=1),
            Column("kind", "EVENT", 12, grow=10, grow_rank=2), Column("change", "CHANGE", 14, keep=40),
            Column("actor", "BY", 10, keep=30, grow=30, grow_rank=0),
            Column("reason", "REASON", 16, grow=1000, grow_rank=3))


class EventTable(LineTable):
    BINDINGS = [Binding("enter", "open", "Open machine", show=True)]

    COMPONENT_PREFIX = "event-table"
    COMPONENT_CLASSES = {"event-table--header", "event-table--cursor", "event-table--bad",
                         "event-table--good", "event-table--dim", "event-table--empty", "event-table--machine"}

    DEFAULT_CSS = """
    EventTable {
        height: 1fr;
        background: $surface;
        & > .event-table--header { background: $panel; color: $text; text-style: bold; }
        & > .event-table--cursor { background: $block-cursor-blurred-background; }
        & > .event-table--bad { color: $text-warning; text-style: bold; }
        & > .event-table--good { color: $text-success; }
        & > .event-table--dim { color: $text-muted; }
        & > .event-table--machine { text-style: bold; }
        & > .event-table--empty { color: $text-muted; text-style: italic; }
        &:focus > .event-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    }
    """

    class Opened(Message):
        def __init__(self, machine: str) -> None:
            super().__init__()
            self.machine = machine

    def __init__(self, clock, *, show_machine: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.events: list[Event] = []
        self.empty_text = "no events"
        self._columns = [c for c in _COLUMNS if show_machine or c.id != "machine"]
        self._cols: list[Placed] = []
        self._widths: list[tuple[int, bool]] = []
        self._width = 0
        self._content: dict[str, int] = {}
        self._layout_key: tuple = ()
        self._relayout()

    def _relayout(self) -> None:
        available = self.scrollable_content_region.width
        key = (available, tuple(sorted(self._content.items())))
        if key == self._layout_key:
            return
        self._layout_key = key
        self._cols = fit_columns(self._columns, available, self._content)
        self._widths = [(p.width, p.column.right) for p in self._cols]
        self._width = width_of(self._cols)
        self.clear_lines()

    def on_resize(self) -> None:
        self._relayout()
        self.set_extent(len(self.events), self._width)
        self.refresh()

    @property
    def column_ids(self) -> list[str]:
        return [p.id for p in self._cols]

    def set_events(self, events: list[Event]) -> None:
        selected = self.events[self.cursor] if self.events and self.cursor < len(self.events) else None
        self.events = events
        recent = events[:500]
        self._content = {"actor": max((len(e.actor) for e in recent), default=0),
                         "machine": max((len(e.machine) for e in recent), default=0),
                         "kind": max((len(e.kind) for e in recent), default=0)}
        self._relayout()
        if selected is not None:
            # keep the cursor on the same event as new ones arrive on top
            for i, ev in enumerate(events[: self.cursor + 200]):
                if ev is selected:
                    self.cursor = i
                    break
        self.set_extent(len(events), self._width)
        self.refresh()

    def row_opened(self, index: int) -> None:
        if self.events[index].machine:
            self.post_message(self.Opened(self.events[index].machine))

    def render_empty(self) -> Strip:
        return Strip([Segment(" " + self.empty_text, self.style_of("empty"))])

    def render_header(self) -> Strip:
        header = self.style_of("header")
        return self.strip([(p.column.title, header) for p in self._cols], self._widths, None, self._width)

    def row_key(self, index: int, selected: bool) -> tuple | None:
        ev = self.events[index]
        return (id(ev), ev.key, selected, fmt.age(self.clock() - ev.when) if ev.when else "-", self._layout_key)

    def render_row(self, index: int, selected: bool) -> Strip:
        ev = self.events[index]
        S = self.style_of
        kind_style = S("bad") if ev.kind in BAD or ev.to_state in ("limbo", "dead") else \
            S("good") if ev.kind in GOOD else Style()
        when = ev.ts.replace("T", " ")[:19]
        changed = ev.from_state != ev.to_state and ev.to_state != "-"  # drained, labelled...: no change
        cells = {"when": (when, S("dim")),
                 "ago": (fmt.age(self.clock() - ev.when) if ev.when else "-", S("dim")),
                 "machine": (ev.machine, S("machine")), "kind": (ev.kind, kind_style),
                 "change": (f"{ev.from_state} → {ev.to_state}" if changed else "", kind_style),
                 "actor": (ev.actor, S("dim")), "reason": (ev.reason, Style())}
        return self.strip([cells[p.id] for p in self._cols], self._widths,
                          S("cursor") if selected else None, self._width)


__all__ = ["EventTable", "fit"]
