"""``centrality metrics NAME`` and ``centrality top``."""

from __future__ import annotations

import csv
import sys
from typing import List, Optional

import typer

from centrality_core.sanitize import one_line

from .. import output
from ..output import Markup
from . import JSON, operator_call


def metrics(ctx: typer.Context, name: str,
            stream: Optional[List[str]] = typer.Option(None, "--stream", "-s", help="Stream (cpu, mem, fs, disk, "
                                                       "net, gpu), key or glob; repeatable. Default: all."),
            since: str = typer.Option("10m", "--since", help="How far back (10m, 2h, 3d)."),
            resolution: str = typer.Option("auto", "--resolution", help="raw, 1m or 1h (min/avg/max rollups) or auto."),
            json: bool = JSON,
            as_csv: bool = typer.Option(False, "--csv", help="Print CSV: a ts column, then one per key.")) -> None:
    """A machine's samples over a window (JSON: a list of {ts, key: value})."""
    argv = ["metrics", name, "--since", since, "--resolution", resolution]
    for s in stream or ():
        argv += ["--stream", s]
    answer = operator_call(ctx, *argv)
    rows = answer.data
    if json:
        return output.print_json(rows)
    keys = sorted({k for r in rows for k in r if k != "ts"})
    if as_csv:  # for spreadsheets and terminals alike: agent-chosen keys are sanitised
        w = csv.writer(sys.stdout)
        w.writerow(["ts", *(one_line(k, 256) for k in keys)])
        for r in rows:
            w.writerow([r["ts"], *(r.get(k, "") for k in keys)])
        return
    if not rows:
        output.err_console().print(f"no samples for {name} in the last {since}")
        return
    shown = keys[:12]
    output.table(["TIME", *shown], ([r["ts"][11:19], *(_num(r.get(k)) for k in shown)] for r in rows[-40:]))
    if len(keys) > len(shown) or len(rows) > 40:
        output.err_console().print(f"({len(rows)} samples, {len(keys)} keys; showing the last 40 and "
                                   f"{len(shown)} keys: use --stream, --json or --csv for all)")


def _num(v) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.1f}"


def top(ctx: typer.Context,
        sort: str = typer.Option("name", "--sort", help="name, state, cpu, mem, gpu, gpu_mem, disk or net."),
        json: bool = JSON) -> None:
    """The fleet now: CPU, memory, GPU, fullest disk and network per machine."""
    rows = operator_call(ctx, "top", "--sort", sort).data
    if json:
        return output.print_json(rows)
    output.table(
        ["NAME", "STATE", "CPU%", "MEM%", "GPU%", "GPUMEM%", "DISK%", "NET MiB/s", "GPUS"],
        ([r["name"], Markup(output.state(r["state"])), _pct(r["cpu_percent"]), _pct(r["mem_percent"]),
          _pct(r["gpu_util_percent"]), _pct(r["gpu_mem_percent"]), _pct(r["disk_percent"]),
          "-" if r["net_bytes_per_s"] is None else f"{r['net_bytes_per_s'] / 2**20:.2f}", r["gpu_count"] or "-"]
         for r in rows),
        empty="no machines yet")


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
    app.command("top")(top)
