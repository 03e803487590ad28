"""The events screen: lifecycle and operator events, newest first, live, filterable."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Input, Static

from ..source import SourceError
from ..widgets.chrome import FilterBar
from ..widgets.event_table import EventTable
from .base import BaseScreen

HISTORY = 1000  # stored events fetched when the screen opens


class EventsScreen(BaseScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back_or_clear", "Back", show=False),
    ]

    DEFAULT_CSS = """
    EventsScreen #events-status { height: 1; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, machine: str | None = None) -> None:
        super().__init__()
        self.machine = machine
        self.filter_text = ""
        self.crumbs = ["Fleet", *([machine] if machine else []), "Events"]
        self._rev = -1
        self.loaded = False
        self.error = ""

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(id="events-status")
        yield EventTable(self.dash.model.clock, id="events")
        yield FilterBar("filter: machine, kind (disconnected), state (limbo), reason, actor…", id="filter")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(EventTable).focus()
        self.run_worker(self._load(), group="load")

    async def _load(self) -> None:
        try:
            self.dash.model.events.merge(await self.dash.source.events(self.machine, HISTORY))
            self.loaded, self.error = True, ""
        except SourceError as exc:
            self.error = exc.reason
        self._rev = -1
        self.safe_tick()  # the screen may have been closed meanwhile

    def tick(self) -> None:
        super().tick()
        log = self.dash.model.events
        if log.revision == self._rev:
            return
        self._rev = log.revision
        shown = log.filtered(self.filter_text, self.machine)
        self.query_one(EventTable).set_events(shown)
        parts: list = [(f"{len(shown)} events", "bold"), (f" of {len(log.items)} known", "$text-muted")]
        if self.machine:
            parts += [("   machine ", "$text-muted"), (self.machine, "bold")]
        if self.filter_text:
            parts += [("   filter: ", "$text-muted"), (self.filter_text, "bold $text-accent")]
        parts.append(("   newest first, live", "$text-muted"))
        if self.error:
            parts.append((f"   history unavailable: {self.error}", "$text-error"))
        self.query_one("#events-status", Static).update(Content.assemble(*parts))

    def action_filter(self) -> None:
        self.query_one(FilterBar).open(self.filter_text)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._rev = -1
        self.tick()

    def action_back_or_clear(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.has_class("-shown") or self.filter_text:
            bar.close()
            self.set_filter("")
            self.query_one(EventTable).focus()
        else:
            self.dismiss()

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, FilterBar):
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterBar):
            event.input.close()
            self.query_one(EventTable).focus()

    def on_event_table_opened(self, message: EventTable.Opened) -> None:
        self.dash.open_machine(message.machine)
