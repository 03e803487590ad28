"""``LineTable``: the base of the dashboard's tables, on Textual's Line API.

A ``ScrollView`` whose line 0 is a fixed header and whose other lines are
rows drawn on demand by ``render_row(index, selected)``: only the rows on
screen are ever rendered, so a table of 10,000 rows costs what 50 cost.
This class owns the cursor (keys, mouse, keeping it visible); subclasses own
the data and how a row looks.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` in exactly ``width`` cells: truncated with an ellipsis, or padded."""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


class LineTable(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Top", show=False),
        Binding("end,G", "jump(-1)", "Bottom", show=False),
    ]

    COMPONENT_PREFIX = "line-table"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.cursor = 0
        self._styles: dict[str, Style] = {}
        self._row_count = 0
        self._width = 0
        self._final: LRUCache[tuple, Strip] = LRUCache(1024)  # finished lines, by row key and viewport
        self._base: Style | None = None

    # ------------------------------------------------------------------ subclass API

    def render_header(self) -> Strip:
        raise NotImplementedError

    def render_row(self, index: int, selected: bool) -> Strip:
        raise NotImplementedError

    def render_empty(self) -> Strip:
        return Strip([])

    def row_key(self, index: int, selected: bool) -> tuple | None:
        """A key that changes whenever row ``index`` would look different (None: do not cache)."""
        return None

    def clear_lines(self) -> None:
        """Forget finished lines (the layout or the theme changed)."""
        self._final.clear()

    def header_clicked(self, x: int) -> None:
        """The header was clicked at virtual column ``x``."""

    def row_opened(self, index: int) -> None:
        """Enter, a click on the selected row, or a double click."""

    def cursor_moved(self, index: int) -> None:
        """The cursor is now on ``index``."""

    # ------------------------------------------------------------------ size and cursor

    def set_extent(self, rows: int, width: int) -> None:
        """The table now has ``rows`` rows of ``width`` cells; keeps the cursor in range."""
        self._row_count, self._width = rows, width
        self.cursor = max(0, min(self.cursor, rows - 1))
        size = Size(width, rows + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    @property
    def row_count(self) -> int:
        return self._row_count

    @property
    def page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def move_to(self, index: int, *, scroll: bool = True) -> None:
        if not self._row_count:
            return
        old = self.cursor
        self.cursor = max(0, min(index, self._row_count - 1))
        if scroll:
            self.scroll_to_cursor()
        if old != self.cursor:
            self._refresh_row(old)
            self._refresh_row(self.cursor)
            self.cursor_moved(self.cursor)

    def _refresh_row(self, index: int) -> None:
        y = index - int(self.scroll_offset.y) + 1
        if 1 <= y < self.size.height:
            self.refresh_line(y)

    def scroll_to_cursor(self) -> None:
        top = int(self.scroll_offset.y)
        rows = self.page_rows
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        rows = self.page_rows
        top = int(self.scroll_offset.y)
        self.scroll_to(y=max(0, top + direction * rows), animate=False, immediate=True)
        self.move_to(self.cursor + direction * rows)
        self.refresh()

    def action_jump(self, where: int) -> None:
        self.move_to(self._row_count - 1 if where < 0 else 0)
        self.refresh()

    def action_open(self) -> None:
        if self._row_count:
            self.row_opened(self.cursor)

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            self.header_clicked(offset.x + int(self.scroll_offset.x))
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= index < self._row_count:
            already = index == self.cursor
            self.move_to(index, scroll=False)
            if already or event.chain >= 2:
                self.row_opened(index)

    # ------------------------------------------------------------------ drawing

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._final.clear()
        self._base = None
        self.styles_changed()

    @property
    def base_style(self) -> Style:
        """The widget's own Rich style (background, colour), computed once per theme."""
        if self._base is None:
            self._base = self.rich_style
        return self._base

    def styles_changed(self) -> None:
        """The theme changed: drop cached lines."""

    def style_of(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            # Not partial: translucent theme colours ($text-muted) are blended with the background here.
            style = self._styles[name] = self.get_component_rich_style(f"{self.COMPONENT_PREFIX}--{name}")
        return style

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.base_style
        pad = base
        if y == 0:
            strip = self.render_header()
            pad = base + self.style_of("header")
        else:
            index = int(scroll_y) + y - 1
            if index >= self._row_count:
                if index == 0:
                    strip = self.render_empty()
                else:
                    return Strip.blank(width, base)
            else:
                selected = index == self.cursor
                key = self.row_key(index, selected)
                if key is not None:
                    cache_key = (key, int(scroll_x), width)
                    finished = self._final.get(cache_key)
                    if finished is not None:
                        return finished
                strip = self.render_row(index, selected)  # its segments carry the base style
                if selected:
                    pad = base + self.style_of("cursor")
                x = int(scroll_x)
                if x == 0 and strip.cell_length <= width:
                    finished = strip.extend_cell_length(width, pad)
                else:
                    finished = strip.crop_extend(x, x + width, pad)
                if key is not None:
                    self._final[cache_key] = finished
                return finished
        return strip.crop_extend(int(scroll_x), int(scroll_x) + width, pad).apply_style(base)

    def strip(self, cells: list[tuple[str, Style]], widths: list[tuple[int, bool]], cursor: Style | None,
              width: int) -> Strip:
        """One line from (text, style) cells laid out in (width, right-aligned) columns."""
        base = self.base_style
        gap = Segment(" ", base if cursor is None else base + cursor)
        segs = []
        for (text, style), (w, right) in zip(cells, widths):
            style = base + style
            segs.append(Segment(fit(text, w, right), style if cursor is None else style + cursor))
            segs.append(gap)
        return Strip(segs, width)
