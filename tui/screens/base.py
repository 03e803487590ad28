"""What every dashboard screen shares: title bar, connection banner, footer,
``q``/Escape to go back, and ``tick()``, called by the app a few times a
second to redraw from the model when something changed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.screen import Screen

from ..widgets.chrome import Banner, TitleBar
from ..widgets.footer import KeyFooter

if TYPE_CHECKING:  # pragma: no cover
    from ..app import CentralityApp


class BaseScreen(Screen):
    BINDINGS = [
        Binding("q", "back", "Back"),
        Binding("escape", "back", "Back", show=False),
    ]

    crumbs: list[str] = []
    ready = False  # composed and mounted: ticks may draw

    @property
    def dash(self) -> CentralityApp:
        return self.app  # type: ignore[return-value]

    def chrome_top(self):
        yield TitleBar()
        yield Banner()

    def chrome_bottom(self):
        yield KeyFooter()

    def on_mount(self) -> None:
        self._link_rev = -1
        self.ready = True
        self.tick()

    @property
    def live(self) -> bool:
        """Composed, mounted and on the app's stack of a running app. A screen being popped
        or shut down loses its widgets one by one while timers and workers still fire."""
        return self.ready and self.is_attached and self.app.is_running and self in self.app.screen_stack

    def safe_tick(self) -> None:
        """``tick()``, unless the screen is being built or torn down."""
        if self.live:
            self.tick()

    def tick(self) -> None:
        """Redraw what changed. Called by the app's redraw timer (and after keys)."""
        status = self.dash.feed.status
        if status.revision != self._link_rev or status.state != "connected":
            self._link_rev = status.revision
            self.query_one(TitleBar).show(self.crumbs, self.dash.source.label, status)
            self.query_one(Banner).show(status, self.dash.monotonic(), self.dash.source.label,
                                        self.dash.feed.last_document_at)

    def action_back(self) -> None:
        self.dismiss()
