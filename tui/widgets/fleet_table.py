"""The fleet table: one line per machine, drawn from the ``FleetModel``.

Why not ``DataTable``: at 10,000 machines changing once a second, DataTable
drops its caches on every cell update and re-measures rows, missing the
100 ms key budget by 5-15x (TUI-PERFORMANCE.md). Here the rows live in the
model; this widget (a ``LineTable``: ScrollView + ``render_line``) keeps a
cursor on a machine, asks the model for the view (names in order) and draws
only the visible lines. A line is cached until its row changes.
"""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip

from .. import format as fmt
from ..layout import Column, Placed, fit as fit_columns, width_of
from ..model import SPARK_LEN, FleetModel, Machine
from .table import LineTable, fit

LABELS_EVERY = 2.0  # seconds between measurements of the longest labels
STATE_GLYPH = {"live": "●", "limbo": "◐", "dead": "✕"}
MARK_GLYPH = "✓"  # a machine marked with space (x runs a command on the marked machines)


def fleet_columns(name_width: int, flags: bool) -> list[Column]:
    """Every column, with how long it stays on a narrow terminal (``keep``, highest last to go)
    and how far it grows on a wide one: labels first, then the sparklines (to ``SPARK_LEN``)."""
    cols = [Column("mark", "", 1), Column("name", "NAME", name_width + 1, "name"),
            Column("state", "STATE", 7, "state")]
    if flags:
        cols.append(Column("flags", "FLAGS", 9, "flags", keep=90))
    spark_grow = SPARK_LEN - 11
    cols += [
        Column("kind", "KIND", 5, "kind", keep=40),
        Column("labels", "LABELS", 14, "labels", keep=35, grow=66, grow_rank=0),
        Column("cpu", "CPU%", 5, "cpu", True, keep=95),
        Column("mem", "MEM%", 5, "mem", True, keep=85),
        Column("gpu", "GPU%", 5, "gpu", True, keep=80),
        Column("gpu_mem", "GMEM%", 6, "gpu_mem", True, keep=50),
        Column("disk", "DISK%", 6, "disk", True, keep=70),
        Column("net", "NET", 10, "net", True, keep=45),
        Column("age", "BEAT", 6, "age", True, keep=75),
        Column("cpu_spark", "CPU HISTORY", 11, "cpu", keep=30, grow=spark_grow, grow_rank=1),
        Column("gpu_spark", "GPU HISTORY", 11, "gpu", keep=25, grow=spark_grow, grow_rank=1),
    ]
    return cols


class FleetTable(LineTable):
    """Machines of the fleet model with a fixed header; click a header to sort."""

    BINDINGS = [Binding("enter", "open", "Open", show=True)]

    COMPONENT_PREFIX = "fleet-table"
    COMPONENT_CLASSES = {
        "fleet-table--header", "fleet-table--sorted", "fleet-table--cursor", "fleet-table--live",
        "fleet-table--limbo", "fleet-table--dead", "fleet-table--warn", "fleet-table--crit",
        "fleet-table--dim", "fleet-table--drained", "fleet-table--unhealthy", "fleet-table--cpu-spark",
        "fleet-table--gpu-spark", "fleet-table--gpu", "fleet-table--empty", "fleet-table--name",
        "fleet-table--mark",
    }

    DEFAULT_CSS = """
    FleetTable {
        height: 1fr;
        background: $surface;
        & > .fleet-table--header { background: $panel; color: $text; text-style: bold; }
        & > .fleet-table--sorted { background: $panel; color: $text-accent; text-style: bold underline; }
        & > .fleet-table--cursor { background: $block-cursor-blurred-background; }
        & > .fleet-table--name { text-style: bold; }
        & > .fleet-table--mark { color: $text-accent; text-style: bold; }
        & > .fleet-table--live { color: $text-success; }
        & > .fleet-table--limbo { color: $text-warning; text-style: bold; }
        & > .fleet-table--dead { color: $text-error; text-style: bold; }
        & > .fleet-table--warn { color: $text-warning; }
        & > .fleet-table--crit { color: $text-error; text-style: bold; }
        & > .fleet-table--dim { color: $text-muted; }
        & > .fleet-table--drained { color: $text-warning; text-style: bold; }
        & > .fleet-table--unhealthy { color: $text-error; text-style: bold; }
        & > .fleet-table--cpu-spark { color: $text-primary; }
        & > .fleet-table--gpu-spark { color: $text-accent; }
        & > .fleet-table--gpu { color: $text-accent; }
        & > .fleet-table--empty { color: $text-muted; text-style: italic; }
        &:focus > .fleet-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    }
    """

    class Opened(Message):
        """Enter (or a second click) on a machine."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, model: FleetModel, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.cursor_name: str | None = None
        self.empty_text = "waiting for the control plane…"
        self._view: list[str] = []
        self._cols: list[Placed] = []
        self._widths: list[tuple[int, bool]] = []
        self._offsets: list[int] = []
        self._name_width = 8
        self._labels_width = 0
        self._labels_next = 0.0
        self._rows_seen = -1
        self._layout_key: tuple = ()
        self._header: tuple[tuple, Strip] | None = None
        self._relayout()

    # ------------------------------------------------------------------ data

    def sync(self) -> None:
        """Pick up model changes: the new view, the cursor kept on its machine, a repaint."""
        model = self.model
        if len(model.rows) != self._rows_seen:
            self._rows_seen = len(model.rows)
            longest = max((cell_len(n) for n in model.rows), default=4)
            self._name_width = max(8, min(28, longest))
        now = time.monotonic()
        if now >= self._labels_next:  # the longest labels (how far LABELS grows): 1-2 ms at 10,000 rows
            self._labels_next = now + LABELS_EVERY
            self._labels_width = max((len(m.labels_text) for m in model.rows.values()), default=0)
        self._relayout()
        self._view = model.view()
        if self.cursor_name is not None:
            pos = model.position(self.cursor_name)
            if pos is not None:
                self.cursor = pos
        self.set_extent(len(self._view), self._width)
        self.cursor_name = self._view[self.cursor] if self._view else None
        self.refresh()

    def on_resize(self) -> None:
        self._relayout()
        self.set_extent(len(self._view), self._width)
        self.refresh()

    def _relayout(self) -> None:
        available = self.scrollable_content_region.width
        key = (self._name_width, self.model.has_flags, available, self._labels_width)
        if key == self._layout_key:
            return
        self._layout_key = key
        self._cols = fit_columns(fleet_columns(self._name_width, self.model.has_flags), available,
                                 {"labels": self._labels_width})
        self._widths = [(p.width, p.column.right) for p in self._cols]
        self._offsets = [p.x for p in self._cols]
        self._width = width_of(self._cols)
        self.clear_lines()
        self._header = None

    @property
    def column_ids(self) -> list[str]:
        """The columns shown now (the terminal's width decides)."""
        return [p.id for p in self._cols]

    @property
    def selected(self) -> str | None:
        return self.cursor_name

    def select(self, name: str) -> bool:
        pos = self.model.position(name)
        if pos is None:
            return False
        self.cursor_name = name
        self.move_to(pos)
        self.refresh()
        return True

    def cursor_moved(self, index: int) -> None:
        self.cursor_name = self._view[index]

    def row_opened(self, index: int) -> None:
        self.post_message(self.Opened(self._view[index]))

    def header_clicked(self, x: int) -> None:
        for p in self._cols:
            if p.x <= x < p.x + p.width + 1 and p.column.sort:
                self.model.set_sort(p.column.sort)
                self.sync()
                return

    # ------------------------------------------------------------------ drawing

    def styles_changed(self) -> None:
        self._header = None

    def render_empty(self) -> Strip:
        if self.model.loaded and self.model.rows:
            text = f"no machine matches the filter “{self.model.filter_text}”"
        elif self.model.loaded:
            text = "no machines yet: join one with `centrality agent join`"
        else:
            text = self.empty_text
        return Strip([Segment(" " + text, self.style_of("empty"))])

    def render_header(self) -> Strip:
        key = (self.model.sort_key, self.model.sort_desc, self._layout_key)
        if self._header is not None and self._header[0] == key:
            return self._header[1]
        header, sorted_style = self.style_of("header"), self.style_of("sorted")
        arrow = "▼" if self.model.sort_desc else "▲"
        segs, marked = [], False
        for p in self._cols:
            c = p.column
            is_sorted = c.sort == self.model.sort_key and not marked and not c.id.endswith("_spark")
            marked = marked or is_sorted
            segs.append(Segment(fit(c.title + arrow if is_sorted else c.title, p.width, c.right),
                                sorted_style if is_sorted else header))
            segs.append(Segment(" ", header))
        strip = Strip(segs, self._width)
        self._header = (key, strip)
        return strip

    def row_key(self, index: int, selected: bool) -> tuple | None:
        m = self.model.rows.get(self._view[index])
        if m is None:
            return None
        return (m.name, m.version, selected, m.name in self.model.marked, fmt.age(m.age(self.model.clock())),
                self._layout_key)

    def render_row(self, index: int, selected: bool) -> Strip:
        m = self.model.rows.get(self._view[index])
        if m is None:
            return Strip([])
        age = fmt.age(m.age(self.model.clock()))
        return self.strip(self._cells(m, age), self._widths, self.style_of("cursor") if selected else None,
                          self._width)

    def _cells(self, m: Machine, age: str) -> list[tuple[str, Style]]:
        S = self.style_of
        stale = m.state != "live"
        dim = S("dim")
        number = dim if stale else Style()
        state_style = S(m.state) if m.state in STATE_GLYPH else dim
        cells: list[tuple[str, Style]] = []
        for p in self._cols:
            cid = p.id
            if cid == "mark":
                cells.append((MARK_GLYPH if m.name in self.model.marked else "", S("mark")))
            elif cid == "name":
                cells.append((m.name, S("name")))
            elif cid == "state":
                cells.append((f"{STATE_GLYPH.get(m.state, '?')} {m.state}", state_style))
            elif cid == "flags":
                if m.drained and m.unhealthy:
                    cells.append(("DRN+UNHL", S("unhealthy")))
                elif m.drained:
                    cells.append(("DRAINED", S("drained")))
                elif m.unhealthy:
                    cells.append(("UNHEALTHY", S("unhealthy")))
                elif m.metrics_held:  # its figures are from before a storm; the rest comes later
                    cells.append(("HELD", dim))
                else:
                    cells.append(("", number))
            elif cid == "kind":
                cells.append((f"GPU×{m.gpu_count}" if m.gpu_count else "CPU", S("gpu") if m.gpu_count else dim))
            elif cid == "labels":
                cells.append((m.labels_text, dim))
            elif cid in ("cpu", "gpu", "gpu_mem"):
                cells.append((fmt.pct(getattr(m, cid)), number))
            elif cid == "mem":
                cells.append((fmt.pct(m.mem), self._level(m.mem, 85, 95, number)))
            elif cid == "disk":
                cells.append((fmt.pct(m.disk), self._level(m.disk, 80, 90, number)))
            elif cid == "net":
                cells.append((fmt.rate(m.net), number))
            elif cid == "age":
                cells.append((age, state_style if stale else number))
            elif cid == "cpu_spark":
                cells.append((fmt.spark(m.cpu_spark, p.width), dim if stale else S("cpu-spark")))
            else:  # gpu_spark
                cells.append((fmt.spark(m.gpu_spark, p.width) if m.gpu_count else "",
                              dim if stale else S("gpu-spark")))
        return cells

    def _level(self, value: float | None, warn: float, crit: float, normal: Style) -> Style:
        if value is None:
            return normal
        if value >= crit:
            return self.style_of("crit")
        if value >= warn:
            return self.style_of("warn")
        return normal
