"""How the CLI prints: JSON for scripts, tables for people, errors on stderr.

Every command that takes ``--json`` then prints exactly one JSON document on
stdout, success or not: a failure is ``{"error": CODE, "reason": TEXT,
"exit_code": N}``. Errors also print ``error: <reason>`` on stderr (never a
traceback) and exit with the error's code (see ``centrality_core.errors``).

Text for people fits the terminal. When stdout is not a terminal (a pipe, a
file), nothing is cut or padded unless ``$COLUMNS`` asks for a width.
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


#: Set by the ``--json`` option of the command being run (``commands.JSON``):
#: failures then print a JSON document too.
json_mode = False


def set_json_mode(value: bool) -> bool:
    global json_mode
    json_mode = json_mode or bool(value)
    return value


def run(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (a coroutine function or plain function) turning errors into exit codes."""
    try:
        result = fn()
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return result
    except CentralityError as exc:
        fail(exc.reason, exc.exit_code, exc.code)
    except KeyboardInterrupt:
        fail("interrupted", 130, "interrupted")


def fail(message: str, code: int = 1, kind: str | None = None) -> None:
    """Exit with ``code``: ``error: message`` on stderr, and the JSON error document under ``--json``."""
    if json_mode:
        print_json(error_document(message, code, kind))
    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """``warning: message`` on stderr (also under ``--json``: stdout keeps its one document)."""
    err_console().print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn_from_store(rows: Iterable[Any]) -> None:
    """Say which rows are the store's because the replica holding them did not answer."""
    held: dict[str, int] = {}
    for r in rows:
        if getattr(r, "from_store", False):
            held[r.replica] = held.get(r.replica, 0) + 1
    for replica, n in sorted(held.items()):
        warn(f"replica {replica} did not answer: its {n} machine(s) are shown as the store last "
             "recorded them (no latest values; marked from_store in --json)")


def replica(row: Any) -> str:
    """The REPLICA cell: who holds the machine, and whether that is only the store's word."""
    if not row.replica:
        return "-"
    return f"{row.replica} (no answer)" if row.from_store else row.replica


def error_document(message: str, code: int, kind: str | None = None) -> dict:
    if kind is None:
        from centrality_core.errors import EXIT_CODES

        kind = next((name for name, c in EXIT_CODES.items() if c == code), "error")
    return {"error": kind, "reason": message, "exit_code": code}


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def err_console():
    return _console(sys.stderr)


def console():
    return _console(sys.stdout)


#: The width text is laid out at when the output is not a terminal and
#: ``$COLUMNS`` is not set: wide enough that no line is ever cut.
UNLIMITED = 100_000


def piped(stream=None) -> bool:
    """True when ``stream`` (stdout) is not a terminal and no ``$COLUMNS`` gives a width."""
    stream = stream or sys.stdout
    return not (hasattr(stream, "isatty") and stream.isatty()) and not _columns()


def _columns() -> int | None:
    import os

    try:
        value = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _console(stream):
    from rich.console import Console

    if piped(stream):  # a pipe or a file: lay out as wide as needed (``show`` strips the padding)
        return Console(file=stream, width=UNLIMITED, soft_wrap=True)
    return Console(file=stream)  # a terminal's width, or $COLUMNS


def print_json(value: Any) -> None:
    import msgspec  # C: 20x faster than json.dumps(indent=2) on a 10,000-machine list

    # JSON escapes C0 controls; C1 and bidi controls are escaped too, so a document
    # shown in a terminal cannot drive it (the values decode unchanged).
    doc = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    if not doc.isascii():  # C1 and bidi controls are not ASCII (the scan costs 20 ms at 10,000 machines)
        doc = json_for_terminal(doc)
    sys.stdout.write(doc + "\n")
    sys.stdout.flush()


def state(value: str) -> str:
    glyph, colour = STATE_STYLE.get(value, ("?", "white"))
    return f"[{colour}]{glyph} {value}[/]"


def age(seconds: float | None) -> str:
    return durations.format(seconds) + " ago" if seconds is not None else "-"


def labels(value: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(value.items()))


def flags(m, sep: str = ",") -> str:
    """A machine's flags (``machines ls``/``show``): drained, unhealthy, its metrics held back."""
    from centrality_core.documents import flag_words

    return sep.join(flag_words(m)) or "-"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          empty: str = "nothing to show", header: bool = True) -> None:
    """A table for people. Headers and cells are plain text (sanitised, never read as
    Rich markup): only ``Markup`` cells, which this program writes, carry styles."""
    t = build_table(columns, rows, title=title, header=header)
    if t is None:
        err_console().print(empty)
    else:
        show(t)


def build_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                header: bool = True):
    """The Rich table ``table`` prints (None when there are no rows), for a live display."""
    from rich.table import Table
    from rich.text import Text

    limit = 4096 if piped() else 120  # a pipe gets whole cells; a terminal, cells it can show

    def cell(c: Any) -> Text:
        return Text.from_markup(c) if isinstance(c, Markup) else Text(one_line(str(c), limit))

    rows = list(rows)
    if not rows:
        return None
    t = Table(title=title, box=None, header_style="bold", pad_edge=False, show_header=header)
    for c in columns:
        t.add_column(Text(one_line(str(c), 120)))
    for row in rows:
        t.add_row(*(cell(c) for c in row))
    return t


def show(renderable) -> None:
    """Print a table (or any Rich renderable) on stdout: to fit a terminal or ``$COLUMNS``;
    when piped, whole (no cell cut) and without the trailing spaces that pad each line."""
    if not piped():
        console().print(renderable)
        return
    from rich.console import Console

    c = Console(width=UNLIMITED, no_color=True, color_system=None, force_terminal=False)
    with c.capture() as capture:
        c.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in capture.get().splitlines()))
    sys.stdout.flush()


class Markup(str):
    """A cell that carries our own Rich markup (not agent text)."""


def warn_unanswered(rows: Iterable[dict], key: str = "name") -> None:
    """On stderr, the machines a fleet-wide answer could not get from the replica that
    holds them (rows with an ``error``): one line per reason, the machines folded."""
    from centrality_core import fold as folding
    from centrality_core.sanitize import one_line

    errors = {r[key]: r["error"] for r in rows if r.get("error")}
    for g in folding.group(errors):
        err_console().print(escape(f"{g.folded}: {one_line(str(g.key), 300)}; shown as this replica last saw them"))
