"""Who is on the GPUs, on the machine screen: a per-GPU panel (as nvitop draws it)
and the table of the GPUs' processes.

``GpuPanel`` shows, per GPU, utilisation and memory as bars, temperature and
power, from the machine's latest values (``gpu[i].*``), with the MIG
instances of a GPU under it. ``GpuProcessTable`` lists the processes of the
latest ``gpu_processes`` snapshot, largest GPU memory first; ``s`` (or a
click on a header) switches between GPU memory, GPU and SM utilisation
order. Everything from the agent is sanitised here, where it is shown.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Static

from centrality_core.gpus import gpu_indexes
from centrality_core.sanitize import one_line

from .. import format as fmt
from .table import LineTable

BAR = 20  # cells per bar
GIB = 1 << 30


def bar(percent: float | None, width: int = BAR) -> tuple[str, str]:
    """(filled, empty) parts of a bar of ``width`` cells, in eighths."""
    if percent is None:
        return "", "·" * width
    eighths = round(max(0.0, min(100.0, percent)) / 100.0 * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])
    return filled, "░" * (width - len(filled))


def _level(percent: float | None) -> str:
    if percent is None:
        return "$text-muted"
    return "$text-error" if percent >= 90 else "$text-warning" if percent >= 60 else "$text-success"


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def panel_content(values: dict[str, float], inventory: list, snapshot: Any) -> Content | None:
    """The per-GPU panel: one line per GPU and one per MIG instance; None without GPUs."""
    names = {_get(g, "index"): one_line(str(_get(g, "name") or ""), 32) for g in inventory or ()
             if isinstance(g, dict)}
    indexes = sorted(set(gpu_indexes(values)) | {i for i in names if isinstance(i, int)})
    if not indexes:
        return None
    mig: dict[int, list] = {}
    counts: dict[int, int] = {}
    for m in (_get(snapshot, "mig") or ()) if snapshot is not None else ():
        if isinstance(_get(m, "gpu"), int):
            mig.setdefault(_get(m, "gpu"), []).append(m)
    for pr in (_get(snapshot, "processes") or ()) if snapshot is not None else ():
        if isinstance(_get(pr, "gpu"), int):
            counts[_get(pr, "gpu")] = counts.get(_get(pr, "gpu"), 0) + 1
    width = max([len(n) for n in names.values()] + [8])
    lines = []
    for i in indexes:
        p = f"gpu[{i}]."
        util = _num(values.get(p + "util_percent"))
        used, total = _num(values.get(p + "mem_used_bytes")), _num(values.get(p + "mem_total_bytes"))
        mem_pct = 100.0 * used / total if used is not None and total else None
        temp, power = _num(values.get(p + "temp_c")), _num(values.get(p + "power_w"))
        u_full, u_empty = bar(util)
        m_full, m_empty = bar(mem_pct)
        parts: list = [(f"GPU {i:<2} ", "bold"), (names.get(i, "").ljust(width), ""),
                       ("  UTIL ", "$text-muted"), (u_full, _level(util)), (u_empty, "$panel-lighten-2"),
                       (f"{fmt.pct(util):>4}%", "bold"),
                       ("  MEM ", "$text-muted"), (m_full, _level(mem_pct)), (m_empty, "$panel-lighten-2"),
                       (f"{_gib(used)}/{_gib(total)} GiB".rjust(14), ""),
                       ("  ", ""), (f"{fmt.pct(temp):>3}°C" if temp is not None else "  -°C",
                                    "$text-warning" if temp is not None and temp >= 80 else ""),
                       ("  ", ""), (f"{power:>4.0f} W" if power is not None else "   - W", ""),
                       ("  ", ""), (f"{counts.get(i, 0)} proc", "$text-muted")]
        lines.append(Content.assemble(*parts))
        for m in sorted(mig.get(i, ()), key=lambda m: (_get(m, "gi") or 0, _get(m, "ci") or 0)):
            mu, mt = _num(_get(m, "mem_used_bytes")), _num(_get(m, "mem_total_bytes"))
            pct = 100.0 * mu / mt if mu is not None and mt else None
            f, e = bar(pct, BAR)
            ci = _get(m, "ci")
            label = f"└ MIG {one_line(str(_get(m, 'profile') or '?'), 12)} GI {_get(m, 'gi')}" + (
                f" CI {ci}" if isinstance(ci, int) else "")
            lines.append(Content.assemble(("       ", ""), (label.ljust(width + 1), "$text-accent"),
                                          (" " * (BAR + 13), ""), ("  MEM ", "$text-muted"), (f, _level(pct)),
                                          (e, "$panel-lighten-2"), (f"{_gib(mu)}/{_gib(mt)} GiB".rjust(14), "")))
    return Content("\n").join(lines)


def _gib(v: float | None) -> str:
    return "-" if v is None else f"{v / GIB:.1f}"


class GpuPanel(Static):
    """The per-GPU panel (empty and hidden by the screen on machines without GPUs)."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; width: auto; min-width: 100%; padding: 0 1; }
    """

    def show(self, values: dict[str, float], inventory: list, snapshot: Any) -> bool:
        """Draw; False when there is no GPU to show."""
        content = panel_content(values, inventory, snapshot)
        if content is None:
            return False
        if content != getattr(self, "_shown", None):
            self._shown = content
            self.update(content)
        return True


# ---------------------------------------------------------------- processes

SORTS = ("memory", "gpu", "sm")
_COLUMNS = (("GPU", 4, True), ("PID", 8, True), ("USER", 12, False), ("TYPE", 4, False),
            ("GPU MEM", 10, True), ("SM%", 4, True), ("MEM%", 4, True), ("COMMAND", 72, False))
_SORT_COLUMN = {"GPU": "gpu", "GPU MEM": "memory", "SM%": "sm"}


class GpuProcessTable(LineTable):
    BINDINGS = [Binding("s", "cycle_sort", "Sort procs", show=True)]

    COMPONENT_PREFIX = "gpu-procs"
    COMPONENT_CLASSES = {"gpu-procs--header", "gpu-procs--cursor", "gpu-procs--dim", "gpu-procs--empty",
                         "gpu-procs--user", "gpu-procs--sorted"}

    DEFAULT_CSS = """
    GpuProcessTable {
        height: auto; max-height: 20;
        background: $surface;
        & > .gpu-procs--header { background: $panel; color: $text; text-style: bold; }
        & > .gpu-procs--sorted { background: $panel; color: $text-accent; text-style: bold underline; }
        & > .gpu-procs--cursor { background: $block-cursor-blurred-background; }
        & > .gpu-procs--dim { color: $text-muted; }
        & > .gpu-procs--user { text-style: bold; }
        & > .gpu-procs--empty { color: $text-muted; text-style: italic; }
        &:focus > .gpu-procs--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort = "memory"
        self.rows: list[tuple] = []
        self.omitted = 0
        self._raw: list = []
        self._widths = [(w, right) for _, w, right in _COLUMNS]
        self._width_total = sum(w + 1 for w, _ in self._widths)

    def set_processes(self, snapshot: Any) -> None:
        procs = list((_get(snapshot, "processes") or ()) if snapshot is not None else ())
        self.omitted = _get(snapshot, "omitted") or 0 if snapshot is not None else 0
        self._raw = procs
        self._build()

    def _build(self) -> None:
        rows = []
        for pr in self._raw:
            gpu, pid = _get(pr, "gpu"), _get(pr, "pid")
            if not isinstance(gpu, int) or not isinstance(pid, int):
                continue
            mem, sm, mp = _num(_get(pr, "used_memory_bytes")), _num(_get(pr, "sm_percent")), \
                _num(_get(pr, "mem_percent"))
            rows.append((gpu, pid, one_line(str(_get(pr, "user") or "-"), 32), one_line(str(_get(pr, "type") or "C"), 4),
                         mem, sm, mp, one_line(str(_get(pr, "command") or ""), 256)))
        key = {"memory": lambda r: (-(r[4] or -1), r[0], r[1]), "gpu": lambda r: (r[0], -(r[4] or -1), r[1]),
               "sm": lambda r: (-(r[5] if r[5] is not None else -1), -(r[4] or -1), r[1])}[self.sort]
        rows.sort(key=key)
        self.rows = rows
        self.styles.height = min(len(rows), 15) + 1 + (len(rows) == 0)
        self.set_extent(len(rows), self._width_total)
        self.clear_lines()
        self.refresh()

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._build()

    def header_clicked(self, x: int) -> None:
        at = 0
        for title, w, _ in _COLUMNS:
            if at <= x < at + w + 1:
                if title in _SORT_COLUMN:
                    self.sort = _SORT_COLUMN[title]
                    self._build()
                return
            at += w + 1

    def render_empty(self) -> Strip:
        return Strip([Segment(" no process on the GPUs", self.base_style + self.style_of("empty"))])

    def render_header(self) -> Strip:
        """Column titles; the one the rows are ordered by is marked ▾ and highlighted."""
        cells = []
        for title, _, _ in _COLUMNS:
            if _SORT_COLUMN.get(title) == self.sort:
                cells.append(("▾" + title, self.style_of("sorted")))
            else:
                cells.append((title, self.style_of("header")))
        return self.strip(cells, self._widths, None, self._width_total)

    def row_key(self, index: int, selected: bool) -> tuple | None:
        return (self.rows[index], selected, self.sort)

    def render_row(self, index: int, selected: bool) -> Strip:
        gpu, pid, user, kind, mem, sm, mp, command = self.rows[index]
        S = self.style_of
        cells = [(str(gpu), Style()), (str(pid), S("dim")), (user, S("user")), (kind, S("dim")),
                 (fmt.size(mem) if mem is not None else "N/A", Style()),
                 (fmt.pct(sm), Style()), (fmt.pct(mp), S("dim")), (command, Style())]
        return self.strip(cells, self._widths, S("cursor") if selected else None, self._width_total)


class GpuSection(Vertical):
    """Title, per-GPU panel and process table; hidden until a machine shows a GPU."""

    DEFAULT_CSS = """
    GpuSection { height: auto; }
    GpuSection.-hidden { display: none; }
    GpuSection > .gpu-title { height: 1; padding: 0 1; margin-top: 1; text-style: bold; color: $text-accent; }
    GpuSection > GpuPanel { margin-bottom: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="-hidden")
        self.snapshot: Any = None

    def compose(self) -> ComposeResult:
        yield Static("GPUs", classes="gpu-title")
        yield GpuPanel()
        yield GpuProcessTable()

    def cycle_sort(self) -> None:
        self.query_one(GpuProcessTable).action_cycle_sort()
        self._title()

    def _title(self) -> None:
        omitted = _get(self.snapshot, "omitted") or 0 if self.snapshot is not None else 0
        order = {"memory": "GPU memory", "gpu": "GPU", "sm": "SM %"}[self.query_one(GpuProcessTable).sort]
        title = Content.assemble(("GPUs", "bold"), (f"   processes by {order} (", "$text-muted"), ("s", "bold"),
                                 (" changes the order)", "$text-muted"),
                                 (f"   +{omitted} smaller processes not sent" if omitted else "", "$text-warning"))
        self.query_one(".gpu-title", Static).update(title)

    def live(self, values: dict[str, float], snapshot: Any, inventory: list) -> None:
        """A new sample (and maybe a new process list) of the machine."""
        if not self.query(GpuPanel):
            return  # not composed yet (a sample can arrive first): the next one is shown
        if snapshot is not None and snapshot != self.snapshot:
            self.snapshot = snapshot
            self.query_one(GpuProcessTable).set_processes(snapshot)
            self._title()
        shown = self.query_one(GpuPanel).show(values, inventory, self.snapshot)
        self.set_class(not shown, "-hidden")


__all__ = ["GpuPanel", "GpuProcessTable", "GpuSection", "bar", "panel_content"]
