"""``centrality gpus [TARGET...] [--idle 1h] [--json]``: every GPU of the fleet, one row each."""

from __future__ import annotations

from typing import List, Optional

import typer

from centrality_core import durations

from .. import output
from . import JSON, answer

GIB = 1 << 30


def gpus(ctx: typer.Context,
         targets: Optional[List[str]] = typer.Argument(None, help="Names, globs or ranges (gpu[01-16]); "
                                                                   "default: the whole fleet."),
         label: Optional[List[str]] = typer.Option(None, "--label", "-l", help="KEY=VALUE: only machines "
                                                    "with this label; repeatable."),
         idle: Optional[str] = typer.Option(None, "--idle", help="Only GPUs at 0 % for this long (1h, 30m) "
                                            "while 1 GiB or more of their memory is held (read from history)."),
         json: bool = JSON) -> None:
    """Every GPU: machine, index, model, util, memory, temperature, power, processes and top user."""
    argv = ["gpus"]
    for lab in label or ():
        argv += ["--label", lab]
    if idle is not None:
        argv += ["--idle", idle]
    rows = answer(ctx, *argv, "--", *(targets or ()))
    if json:
        return output.print_json(rows)
    empty = (f"no GPU idle for {idle} with memory held" if idle is not None else "no GPUs")
    output.table(
        ["MACHINE", "GPU", "MODEL", "UTIL%", "MEMORY GiB", "TEMP", "POWER W", "PROCS", "TOP USER"],
        ([r["machine"], r["index"], r["model"] or "-", _num(r["util_percent"], "{:.0f}"), _mem(r),
          _num(r["temp_c"], "{:.0f}C"), _num(r["power_w"], "{:.0f}"),
          "-" if r["processes"] is None else r["processes"], r["top_user"] or "-"] for r in rows),
        empty=empty)
    output.warn_unanswered({r["machine"]: r for r in rows}.values(), key="machine")
    idle_rows = [r for r in rows if not r.get("error")]
    if idle is not None and idle_rows:
        output.err_console().print(f"{len(idle_rows)} GPU(s) at 0 % for {durations.format(durations.parse(idle))} "
                                   "with memory held")


def _num(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _mem(r: dict) -> str:
    used, total = r["mem_used_bytes"], r["mem_total_bytes"]
    if used is None:
        return "-"
    return f"{used / GIB:.1f}/{total / GIB:.0f}" if total else f"{used / GIB:.1f}"


def register(app: typer.Typer) -> None:
    app.command("gpus")(gpus)
