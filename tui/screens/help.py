"""``?``: keys, glyphs and where the data comes from."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from .cluster import SORT_KEYS

SECTIONS = [
    ("Everywhere", [
        ("?", "this help"), ("q / Esc", "back (quit on the fleet screen)"), ("Enter", "drill in"),
        ("/", "filter"), ("↑ ↓ j k", "move"), ("PgUp PgDn", "page"), ("Home End g G", "top, bottom"),
        ("Ctrl+P", "command palette: every action, and “open machine NAME”"),
        ("Ctrl+T", "light / dark theme"), ("mouse", "click a row to select, click again to open; "
                                           "click a column title to sort; wheel scrolls"),
    ]),
    ("Fleet", [
        ("s / r", "sort by the next column / reverse the order"),
        (" ".join(key for _, key, _ in SORT_KEYS[:5]), "sort by " + ", ".join(n for _, _, n in SORT_KEYS[:5])),
        (" ".join(key for _, key, _ in SORT_KEYS[5:]), "sort by " + ", ".join(n for _, _, n in SORT_KEYS[5:])),
        ("e", "events"),
        ("space / c", "mark / unmark the machine under the cursor (✓, then on to the next row) / clear the marks"),
        ("x", "run a command on the marked machines, or else on the one under the cursor"),
        ("X", "run a command on every machine shown (all rows matching the filter)"),
        ("S", "a shell on the machine under the cursor (the dashboard waits until it ends)"),
        ("d / u", "drain (asks why, one reason for all) / undrain the marked machines, or else the one "
                  "under the cursor"),
        ("Ctrl+D / Del", "forget the marked machines (or the one under the cursor), after asking: a dead "
                         "machine is removed (its name is free), one in limbo is declared dead"),
        ("filter", "words must all match name, hostname, labels, state, kind or flags; "
                   "state:limbo, kind:gpu, label:pool=eval, name:gpu-0 match one field"),
    ]),
    ("Machine", [
        ("1 2 3 4", "chart window: 1 min, 10 min (raw samples), 1 hour, 24 hours (1-minute rollups)"),
        ("n", "jump to the nvidia-smi screen"), ("e", "this machine's events"), ("R", "reload history"),
        ("s", "GPU processes: order by GPU memory, GPU or SM % (or click a column title)"),
        ("x", "run a command on this machine"), ("S", "a shell on this machine (centrality ssh)"),
        ("d / u", "drain (asks why; exec skips drained machines) / undrain"),
    ]),
    ("Exec", [
        ("Enter", "run the line (as sh -c LINE) on the machines listed; above the control plane's "
                  "exec_confirm_above it asks first (y / n)"),
        ("Esc", "cancel a running command on every machine still running it, and close"),
        ("PgUp PgDn", "scroll the results: identical outputs are folded under gpu-[01-12] (12)"),
    ]),
    ("Events", [("Enter", "open the event's machine"), ("/", "filter by machine, kind, state, reason, actor")]),
    ("States", [
        ("● live", "heartbeats arrive"), ("◐ limbo", "connection lost or heartbeats stopped; may come back"),
        ("✕ dead", "silent too long, or forgotten by an operator"),
        ("DRAINED / UNHEALTHY", "operator and health flags, independent of the state"),
        ("✓", "marked: x runs a command on the marked machines"),
    ]),
]


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; max-width: 100%; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    HelpScreen .title { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Help"
            for title, rows in SECTIONS:
                yield Static(Content.styled(title, "bold $text-accent"), classes="title")
                grid = Table.grid(padding=(0, 2))
                grid.add_column(width=20, style="bold", no_wrap=True)
                grid.add_column(ratio=1)
                for key, what in rows:
                    grid.add_row(key, what)
                yield Static(grid)
            yield Static(Content.styled(
                "Data is pushed by the control plane over SSH and redrawn at most 4 times a second. "
                "Text from agents is stripped of terminal escape sequences.", "$text-muted"), classes="title")
