"""``CentralityApp``: screens, app-wide keys, the command palette, and the
redraw tick. Thin on purpose: data handling lives in ``feed``/``model``,
drawing in ``screens``/``widgets``.

Data flow: ``Feed`` (an asyncio task) applies every pushed document to the
``FleetModel`` as it arrives; a timer calls the current screen's ``tick()``
``redraw_hz`` times a second, which repaints only if the model changed.
Keys repaint at once. So the network never blocks a key, and 10,000 rows
changing every second cost at most 4 repaints of the visible lines.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Callable, Iterable

from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.screen import Screen

from centrality_core.backoff import Backoff

from .feed import Feed
from .history import History
from .model import FleetModel
from .screens.base import BaseScreen
from .screens.cluster import ClusterScreen
from .screens.events import EventsScreen
from .screens.exec import ExecScreen
from .screens.help import HelpScreen
from .screens.machine import MachineScreen
from .source import FleetSource
from .theme import THEMES

#: Actions not worth a palette entry (cursor movement).
_NOT_IN_PALETTE = {"cursor", "page", "jump", "command_palette", "help", "quit", "toggle_theme", "dismiss",
                   "scroll_results"}


class MachineCommands(Provider):
    """Palette: ``open machine NAME`` for every machine in the fleet."""

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, CentralityApp):
            return
        words = [w for w in query.lower().split() if w not in ("open", "machine", "go")]
        needle = words[-1] if words else ""
        if not needle:
            return
        names = [n for n in app.model.rows if needle in n.lower()][:50]
        matcher = self.matcher(query)
        for name in names:
            text = f"Open machine {name}"
            score = max(matcher.match(text), 0.5 if name.lower().startswith(needle) else 0.3)
            yield Hit(score, matcher.highlight(text), partial(app.open_machine, name), text=text,
                      help=f"{app.model.rows[name].state} · {app.model.rows[name].labels_text or 'no labels'}")


class CentralityApp(App):
    TITLE = "Centrality"
    COMMANDS = App.COMMANDS | {MachineCommands}
    # Textual's faint placeholder is under 3:1 on the light theme: muted text reads at both.
    CSS = """
    Input > .input--placeholder { color: $text-muted; }
    """
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
    ]

    def __init__(self, source: FleetSource, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, redraw_hz: float = 4.0,
                 theme: str = "dark", backoff: Backoff | None = None) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.monotonic = monotonic
        self.model = FleetModel(clock)
        self.feed = Feed(source, self.model, backoff=backoff, monotonic=monotonic)
        self.redraw_interval = 1.0 / redraw_hz
        self.redraws = 0
        self._theme_choice = theme
        self.exec_history = History()  # the exec prompt's lines, shared by every exec screen

    def on_mount(self) -> None:
        for t in THEMES.values():
            self.register_theme(t)
        self.theme = THEMES.get(self._theme_choice, THEMES["dark"]).name
        self.push_screen(ClusterScreen())
        self.run_worker(self.feed.run(), name="feed", group="feed")
        self.set_interval(self.redraw_interval, self.redraw)

    def redraw(self) -> None:
        """Let the current screen draw what changed since its last tick."""
        try:
            screen = self.screen
        except ScreenStackError:  # the app is closing: its screens are gone, the timer not yet
            return
        if isinstance(screen, BaseScreen):
            self.redraws += 1
            screen.safe_tick()

    # ------------------------------------------------------------------ navigation

    def open_machine(self, name: str) -> None:
        if isinstance(self.screen, MachineScreen) and self.screen.machine_name == name:
            return
        self.push_screen(MachineScreen(name))

    def open_events(self, machine: str | None = None) -> None:
        self.push_screen(EventsScreen(machine))

    def open_exec(self, names: list[str], description: str, crumbs: list[str] | None = None) -> None:
        self.push_screen(ExecScreen(names, description, crumbs))

    def action_events(self) -> None:
        self.open_events()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light" if self.current_theme.dark else "dark"].name

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Keys, glyphs and where the data comes from", self.action_help)
        yield SystemCommand("Light / dark theme", "Switch between the light and the dark theme",
                            self.action_toggle_theme)
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            name = binding.action.split("(")[0].split(".")[-1]
            if not binding.description or name in _NOT_IN_PALETTE or binding.action in seen:
                continue
            seen.add(binding.action)
            title = _TITLES.get(binding.action, binding.description)
            yield SystemCommand(title, f"key: {binding.key_display or key}",
                                partial(self._run_bound, active.node, binding.action))

    async def _run_bound(self, node, action: str) -> None:
        await self.run_action(action, node)


#: Palette titles clearer than the footer's short descriptions.
_TITLES = {
    "window('1m')": "Chart window: 1 minute", "window('10m')": "Chart window: 10 minutes",
    "window('1h')": "Chart window: 1 hour", "window('24h')": "Chart window: 24 hours",
    "filter": "Filter", "sort_next": "Sort by the next column", "sort_reverse": "Reverse the sort order",
    "app.events": "Events", "events": "This machine's events", "nvidia": "Show the nvidia-smi screen",
    "open": "Open the selected row", "back": "Back", "clear_filter": "Clear the filter",
    "back_or_clear": "Clear the filter, or back", "reload": "Reload the chart history",
    "toggle_mark": "Mark / unmark the selected machine", "clear_marks": "Clear the marks",
    "exec('selection')": "Run a command on the marked machines (or the selected one)",
    "exec('filter')": "Run a command on every machine shown (the filter's matches)",
    "exec('machine')": "Run a command on this machine",
    "drain": "Drain this machine (asks why)", "undrain": "Undrain this machine",
    "drain_selection": "Drain the marked machines, or the selected one (asks why, one reason for all)",
    "undrain_selection": "Undrain the marked machines, or the selected one",
    "forget": "Forget the marked machines, or the selected one: dead ones are removed, ones in limbo "
              "declared dead (asks first)", "close": "Cancel the running command / close",
    "shell": "Open a shell on the machine (the dashboard waits until it ends)",
}
