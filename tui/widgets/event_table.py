"""Events, newest first, on the Line API (a busy fleet makes thousands)."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip

from .. import format as fmt
from ..model import Event
from .table import LineTable, fit

#: Event kinds that mean trouble, and those that mean recovery.
BAD = {"disconnected", "heartbeat_missed", "expired", "registration_refused", "forgotten", "unhealthy",
       "retired"}
GOOD = {"registered", "reconnected", "healthy", "undrained"}

_COLUMNS = (("TIME (UTC)", 19, False), ("AGO", 5, True), ("MACHINE", 16, False), ("EVENT", 20, False),
            ("CHANGE", 14, False), ("BY", 10, False), ("REASON", 48, False))


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
        self._cols = [c for c in _COLUMNS if show_machine or c[0] != "MACHINE"]
        self._widths = [(w, right) for _, w, right in self._cols]
        self._width = sum(w + 1 for w, _ in self._widths)

    def set_events(self, events: list[Event]) -> None:
        selected = self.events[self.cursor] if self.events and self.cursor < len(self.events) else None
        self.events = events
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
        return self.strip([(title, header) for title, _, _ in self._cols], self._widths, None, self._width)

    def row_key(self, index: int, selected: bool) -> tuple | None:
        ev = self.events[index]
        return (id(ev), ev.key, selected, fmt.age(self.clock() - ev.when) if ev.when else "-")

    def render_row(self, index: int, selected: bool) -> Strip:
        ev = self.events[index]
        S = self.style_of
        kind_style = S("bad") if ev.kind in BAD or ev.to_state in ("limbo", "dead") else \
            S("good") if ev.kind in GOOD else Style()
        when = ev.ts.replace("T", " ")[:19]
        cells = {"TIME (UTC)": (when, S("dim")),
                 "AGO": (fmt.age(self.clock() - ev.when) if ev.when else "-", S("dim")),
                 "MACHINE": (ev.machine, S("machine")), "EVENT": (ev.kind, kind_style),
                 "CHANGE": (f"{ev.from_state} → {ev.to_state}"  # drained, labelled...: no state change
                            if (ev.from_state, ev.to_state) != ("-", "-") else "", kind_style),
                 "BY": (ev.actor, S("dim")), "REASON": (ev.reason, Style())}
        return self.strip([cells[title] for title, _, _ in self._cols], self._widths,
                          S("cursor") if selected else None, self._width)


__all__ = ["EventTable", "fit"]
