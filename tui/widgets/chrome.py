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
    DEFAULT_CSS = """
    SummaryBar { height: 2; padding: 0 1; background: $boost; }
    """

    _shown: Content | None = None

    def show(self, s: Summary, *, sort: str, descending: bool, filter_text: str, has_flags: bool,
             marked: int = 0) -> None:
        parts: list = [
            (f"{s.total} machines", "bold"), "   ",
            (f"● live {s.live}", "$text-success"), "  ",
            (f"◐ limbo {s.limbo}", "$text-warning bold" if s.limbo else "$text-muted"), "  ",
            (f"✕ dead {s.dead}", "$text-error bold" if s.dead else "$text-muted"),
        ]
        if has_flags:
            parts += ["   ", (f"drained {s.drained}", "$text-warning" if s.drained else "$text-muted"), "  ",
                      (f"unhealthy {s.unhealthy}", "$text-error bold" if s.unhealthy else "$text-muted")]
        parts += [
            SEP, (f"GPU machines {s.gpu_machines}", ""), (f" ({s.gpus} GPUs)", "$text-muted"),
            ("  CPU machines ", ""), (f"{s.cpu_machines}", ""),
            SEP, ("fleet GPU ", ""), (_pct(s.gpu_util), "bold $text-accent"),
            ("  CPU ", ""), (_pct(s.cpu_util), "bold $text-primary"),
        ]
        line2: list = [(f"showing {s.shown} of {s.total}", "$text-muted"),
                       (f"   sorted by {sort} {'▼' if descending else '▲'}", "$text-muted")]
        if filter_text:
            line2 += [("   filter: ", "$text-muted"), (filter_text, "bold $text-accent")]
        if marked:
            line2 += [("   ", ""), (f"✓ {marked} marked", "bold $text-accent"),
                      ("  (x runs a command on them, c clears)", "$text-muted")]
        content = Content.assemble(*parts, "\n", *line2)
        if content != self._shown:  # a fixed height: no layout pass, only this bar repaints
            self._shown = content
            self.update(content, layout=False)


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
