"""The small widgets around the tables: title bar, connection banner,
fleet summary and the filter input. Text is assembled from (text, style)
pieces, never parsed as markup, so a label or a filter typed by someone
cannot style the screen."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Input, Static

from .. import format as fmt
from ..feed import LinkStatus
from ..model import Summary

SEP = ("  │  ", "$text-muted")


class TitleBar(Static):
    DEFAULT_CSS = """
    TitleBar { height: 1; background: $primary; color: $text; padding: 0 1; text-style: bold; }
    """

    def show(self, crumbs: list[str], where: str, status: LinkStatus | None) -> None:
        parts: list = [("Centrality", "bold")]
        for c in crumbs:
            parts += [("  ▸  ", ""), (c, "bold")]
        parts += ["   ", (where, "not bold")]
        if status is not None:
            glyph, word = {"connected": ("●", "live"), "lost": ("✕", "disconnected"),
                           "connecting": ("◌", "connecting")}.get(status.state, ("?", status.state))
            parts += ["  ", (f"{glyph} {word}", "not bold")]
        self.update(Content.assemble(*parts), layout=False)


class Banner(Static):
    """Shown while the link to the control plane is down (or not up yet)."""

    DEFAULT_CSS = """
    Banner { height: auto; padding: 0 1; display: none; }
    Banner.-lost { display: block; background: $error; color: $text; text-style: bold; }
    Banner.-connecting { display: block; background: $warning-muted; color: $text; }
    """

    def show(self, status: LinkStatus, now: float, label: str, data_at: float | None) -> None:
        self.set_class(status.state == "lost", "-lost")
        self.set_class(status.state == "connecting", "-connecting")
        if status.state == "connected":
            return
        if status.state == "lost":
            wait = max(0.0, (status.retry_at or now) - now)
            stale = f" The figures shown are from {fmt.age(now - data_at)} ago." if data_at is not None else ""
            text = (f"⚠ Connection to {label} lost: {status.reason}. "
                    f"Reconnecting in {wait:.0f}s (attempt {status.attempt}).{stale}")
        elif status.attempt:
            text = f"◌ Reconnecting to {label} (attempt {status.attempt + 1})…"
        else:
            text = f"◌ Connecting to {label}…"
        self.update(Content(text))


class SummaryBar(Static):
    """Two lines that never wrap: the fleet's counts, then what the table shows and how it is sorted.

    Each line has a long, a shorter and a shortest form; the longest that fits
    the terminal's width is drawn, so the second line is never pushed out."""

    DEFAULT_CSS = """
    SummaryBar { height: 2; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    _shown: Content | None = None
    _args: tuple | None = None

    def show(self, s: Summary, *, sort: str, descending: bool, filter_text: str, has_flags: bool,
             marked: int = 0) -> None:
        self._args = (s, sort, descending, filter_text, has_flags, marked)
        width = self.content_size.width or 200
        line1 = _fitting([_counts(s, has_flags, level) for level in range(4)], width)
        line2 = _fitting([_showing(s, sort, descending, filter_text, marked, level) for level in range(3)], width)
        content = Content.assemble(*line1, "\n", *line2)
        if content != self._shown:  # a fixed height: no layout pass, only this bar repaints
            self._shown = content
            self.update(content, layout=False)

    def on_resize(self) -> None:
        if self._args is not None:
            s, sort, descending, filter_text, has_flags, marked = self._args
            self.show(s, sort=sort, descending=descending, filter_text=filter_text, has_flags=has_flags,
                      marked=marked)


def _fitting(variants: list[list], width: int) -> list:
    """The first (longest) of ``variants`` that fits in ``width`` cells; else the shortest."""
    for parts in variants:
        if Content.assemble(*parts).cell_length <= width:
            return parts
    return variants[-1]


def _counts(s: Summary, has_flags: bool, level: int) -> list:
    """Machines by state, flags, GPU and CPU machines, fleet utilisation; shorter as ``level`` grows
    (0: every word; 1: fewer words; 2: no machine kinds; 3: numbers and glyphs)."""
    sep = SEP if level == 0 else (" │ ", "$text-muted")
    limbo = "$text-warning bold" if s.limbo else "$text-muted"
    dead = "$text-error bold" if s.dead else "$text-muted"
    drained = "$text-warning" if s.drained else "$text-muted"
    unhealthy = "$text-error bold" if s.unhealthy else "$text-muted"
    if level == 0:
        parts: list = [(f"{s.total} machines", "bold"), "   ", (f"● live {s.live}", "$text-success"), "  ",
                       (f"◐ limbo {s.limbo}", limbo), "  ", (f"✕ dead {s.dead}", dead)]
        if has_flags:
            parts += ["   ", (f"drained {s.drained}", drained), "  ", (f"unhealthy {s.unhealthy}", unhealthy)]
        parts += [sep, (f"GPU machines {s.gpu_machines}", ""), (f" ({s.gpus} GPUs)", "$text-muted"),
                  ("  CPU machines ", ""), (f"{s.cpu_machines}", "")]
    elif level == 1:
        parts = [(f"{s.total} machines:", "bold"), " ", (f"● {s.live} live", "$text-success"), "  ",
                 (f"◐ {s.limbo} limbo", limbo), "  ", (f"✕ {s.dead} dead", dead)]
        if has_flags:
            parts += ["  ", (f"{s.drained} drained", drained), "  ", (f"{s.unhealthy} unhealthy", unhealthy)]
        parts += [sep, (f"{s.gpu_machines} GPU", ""), (f" ({s.gpus} GPUs)", "$text-muted"),
                  (f"  {s.cpu_machines} CPU", "")]
    else:
        short = level == 3
        parts = [(f"{s.total}" if short else f"{s.total} machines", "bold"), "  ",
                 (f"● {s.live}", "$text-success"), "  ", (f"◐ {s.limbo}", limbo), "  ", (f"✕ {s.dead}", dead)]
        if has_flags:
            parts += ["  ", (f"drn {s.drained}" if short else f"drained {s.drained}", drained), "  ",
                      (f"unh {s.unhealthy}" if short else f"unhealthy {s.unhealthy}", unhealthy)]
    parts += [sep, ("fleet GPU " if level < 2 else "GPU ", ""), (_pct(s.gpu_util), "bold $text-accent"),
              ("  CPU ", ""), (_pct(s.cpu_util), "bold $text-primary")]
    return parts


def _showing(s: Summary, sort: str, descending: bool, filter_text: str, marked: int, level: int) -> list:
    """``showing N of M · sorted by …``, the filter and the marks; the hints go first when narrow."""
    arrow = "▼" if descending else "▲"
    gap = "   " if level == 0 else "  "
    parts: list = [(f"showing {s.shown} of {s.total}", "$text"),
                   (f"{gap}sorted by {sort} {arrow}" if level < 2 else f" · by {sort} {arrow}", "$text-muted")]
    if filter_text:
        shown = filter_text if level < 2 else filter_text[:16] + ("…" if len(filter_text) > 16 else "")
        parts += [(f"{gap}filter: " if level < 2 else " · ", "$text-muted"), (shown, "bold $text-accent")]
    if marked:
        parts += [gap, (f"✓ {marked} marked", "bold $text-accent")]
        if level == 0:
            parts.append(("  (x runs a command on them, c clears)", "$text-muted"))
    return parts


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


class FilterBar(Input):
    """``/``: type to filter; Enter keeps the filter, Escape clears it."""

    DEFAULT_CSS = """
    FilterBar { display: none; border: tall $accent; height: 3; }
    FilterBar.-shown { display: block; }
    """

    def __init__(self, placeholder: str, *, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id)

    def open(self, value: str) -> None:
        self.value = value
        self.add_class("-shown")
        self.focus()
        self.cursor_position = len(value)

    def close(self) -> None:
        self.remove_class("-shown")
