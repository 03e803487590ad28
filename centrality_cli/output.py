"""How the CLI prints: JSON for scripts, tables for people, errors on stderr.

Every read command takes ``--json`` and then prints exactly one JSON document.
Errors print ``error: <reason>`` on stderr (never a traceback) and exit with
the error's code (see ``centrality_core.errors``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Iterable, Sequence

import typer

from centrality_core import durations
from centrality_core.errors import CentralityError
from centrality_core.sanitize import json_for_terminal, one_line

STATE_STYLE = {"live": ("●", "green"), "limbo": ("◐", "yellow"), "dead": ("✕", "red")}


def run(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (a coroutine function or plain function) turning errors into exit codes."""
    try:
        result = fn()
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return result
    except CentralityError as exc:
        fail(exc.reason, exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


def fail(message: str, code: int = 1) -> None:
    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def err_console():
    from rich.console import Console

    return Console(stderr=True)


def console():
    from rich.console import Console

    return Console()


def print_json(value: Any) -> None:
    import msgspec  # C: 20x faster than json.dumps(indent=2) on a 10,000-machine list

    # JSON escapes C0 controls; C1 and bidi controls are escaped too, so a document
    # shown in a terminal cannot drive it (the values decode unchanged).
    doc = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    sys.stdout.write(json_for_terminal(doc) + "\n")
    sys.stdout.flush()


def state(value: str) -> str:
    glyph, colour = STATE_STYLE.get(value, ("?", "white"))
    return f"[{colour}]{glyph} {value}[/]"


def age(seconds: float | None) -> str:
    return durations.format(seconds) + " ago" if seconds is not None else "-"


def labels(value: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(value.items()))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          empty: str = "nothing to show", header: bool = True) -> None:
    """A table for people. Headers and cells are plain text (sanitised, never read as
    Rich markup): only ``Markup`` cells, which this program writes, carry styles."""
    from rich.table import Table
    from rich.text import Text

    def cell(c: Any) -> Text:
        return Text.from_markup(c) if isinstance(c, Markup) else Text(one_line(str(c), 120))

    rows = list(rows)
    if not rows:
        err_console().print(empty)
        return
    t = Table(title=title, box=None, header_style="bold", pad_edge=False, show_header=header)
    for c in columns:
        t.add_column(Text(one_line(str(c), 120)))
    for row in rows:
        t.add_row(*(cell(c) for c in row))
    console().print(t)


class Markup(str):
    """A cell that carries our own Rich markup (not agent text)."""
