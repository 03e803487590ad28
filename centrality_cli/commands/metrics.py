"""``centrality metrics NAME`` and ``centrality top``."""

from __future__ import annotations

import csv
import sys
from typing import List, Optional

import typer

from centrality_core.documents import FleetRow
from centrality_core.sanitize import one_line

from .. import output
from ..output import Markup
from . import JSON, MACHINE, _machine_names, ask


#: What ``metrics NAME`` shows without --stream or --keys: the figures a person
#: looks at first. ``--keys '*'`` shows every key.
DEFAULT_KEYS = ("cpu.percent", "mem.percent", "gpu[*].util_percent", "gpu[*].mem_util_percent",
                "fs[*].percent", "net[*].recv_bytes_per_s", "net[*].sent_bytes_per_s")
#: Rows a table shows (the newest); --json and --csv have them all.
TABLE_ROWS = 40


def metrics(ctx: typer.Context, name: str = MACHINE,
            stream: Optional[List[str]] = typer.Option(None, "--stream", "-s", help="Stream (cpu, mem, fs, disk, "
                                                       "net, gpu), key or glob; repeatable. Default: all."),
            keys: Optional[List[str]] = typer.Option(None, "--keys", "-k", metavar="GLOB",
                                                     help="Keys to show, as names or globs ('gpu[*].temp_c', "
                                                          "'cpu[1?]*', '*' for all); repeatable. The table's "
                                                          "default is a summary: CPU, memory, GPU, fs, network."),
            since: str = typer.Option("10m", "--since", help="How far back (10m, 2h, 3d)."),
            resolution: str = typer.Option("auto", "--resolution", help="raw, 1m or 1h (min/avg/max rollups) or auto."),
            json: bool = JSON,
            as_csv: bool = typer.Option(False, "--csv", help="Print CSV: a ts column, then one per key.")) -> None:
    """A machine's samples over a window (JSON: a list of {ts, key: value})."""
    from centrality_core.hostlist import natural_key
    from centrality_core.summary import select

    # --keys alone: only those keys cross the network
    rows = ask(ctx, lambda client: client.metrics(name, since=since, resolution=resolution,
                                                  streams=stream or keys or ()))
    present = sorted({k for r in rows for k in r if k != "ts"}, key=natural_key)  # cpu[2] before cpu[10]
    wanted = select(present, list(keys)) if keys else present
    if json:
        return output.print_json([{"ts": r["ts"], **{k: r[k] for k in wanted if k in r}} for r in rows]
                                 if keys else rows)
    if as_csv:  # for spreadsheets and terminals alike: agent-chosen keys are sanitised
        w = csv.writer(sys.stdout)
        w.writerow(["ts", *(one_line(k, 256) for k in wanted)])
        for r in rows:
            w.writerow([r["ts"], *(r.get(k, "") for k in wanted)])
        return
    if not rows:
        output.err_console().print(f"no samples for {name} in the last {since}")
        return
    if keys and not wanted:
        output.fail(f"no key of {name} matches {', '.join(keys)} (--stream {' '.join(stream or ())})", 2, "usage")
    if not keys and not stream:
        wanted = list(dict.fromkeys(k for pattern in DEFAULT_KEYS for k in select(present, [pattern]))) or present
    last = rows[-TABLE_ROWS:]
    shown = _fitting(wanted, last)
    output.table(["TIME", *shown], ([r["ts"][11:19], *(_num(r.get(k)) for k in shown)] for r in last))
    note = []
    if len(last) < len(rows):
        note.append(f"the last {len(last)} of {len(rows)} samples")
    if len(shown) < len(present):
        note.append(f"{len(shown)} of {len(present)} keys")
    if note:
        output.err_console().print(f"(showing {' and '.join(note)}: --keys GLOB picks keys ('*' for all); "
                                   "--json or --csv print every sample)", highlight=False)


def _fitting(keys: list[str], rows: list[dict]) -> list[str]:
    """As many of ``keys`` as fit the width with their whole header (all of them when piped)."""
    if output.piped():
        return keys
    width = output.console().width - 10  # the TIME column
    shown = []
    for k in keys:
        cell = max([len(k)] + [len(_num(r.get(k))) for r in rows]) + 2
        if cell > width and shown:
            break
        shown.append(k)
        width -= cell
    return shown


def _num(v) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.1f}"


def top(ctx: typer.Context,
        sort: str = typer.Option("name", "--sort", help="name, state, cpu, mem, gpu, gpu_mem, disk or net."),
        watch: bool = typer.Option(False, "--watch", "-w", help="Redraw every --interval until Ctrl-C "
                                   "(with --json: one JSON document per line, each refresh)."),
        interval: str = typer.Option("2s", "--interval", "-n", metavar="DURATION",
                                     help="Time between refreshes with --watch."),
        json: bool = JSON) -> None:
    """The fleet now: CPU, memory, GPU, fullest disk and network per machine."""
    if not watch:
        rows = ask(ctx, lambda client: client.top(sort=sort))
        output.warn_from_store(rows)
        if json:
            return output.print_json(rows)
        output.table(TOP_COLUMNS, _top_rows(rows), empty="no machines yet")
        return
    from centrality_core import durations

    period = output.run(lambda: durations.parse(interval))

    def go() -> None:
        import asyncio

        try:
            asyncio.run(_watch(ctx, sort, max(period, 0.2), json))
        except KeyboardInterrupt:  # how a watch ends
            pass

    output.run(go)


TOP_COLUMNS = ["NAME", "STATE", "CPU%", "MEM%", "GPU%", "GPUMEM%", "DISK%", "NET MiB/s", "GPUS"]


def _top_rows(rows: list[FleetRow]):
    return ([r.name, Markup(output.state(r.state)), _pct(r.cpu_percent), _pct(r.mem_percent),
             _pct(r.gpu_util_percent), _pct(r.gpu_mem_percent), _pct(r.disk_percent),
             "-" if r.net_bytes_per_s is None else f"{r.net_bytes_per_s / 2**20:.2f}", r.gpu_count or "-"]
            for r in rows)


async def _watch(ctx: typer.Context, sort: str, period: float, as_json: bool) -> None:
    """One connection, one ``top`` request per refresh: redrawn in place on a terminal, appended when piped."""
    import asyncio
    import json as jsonlib
    import time

    from centrality_core.client import OperatorClient
    from centrality_core.documents import to_builtins

    live = None
    if not as_json and sys.stdout.isatty():  # redrawn in place; a pipe gets each refresh appended
        from rich.live import Live

        live = Live(console=output.console(), auto_refresh=False, transient=False)
        live.start()
    try:
        async with OperatorClient(ctx.obj["context"]) as client:
            while True:
                rows = await client.top(sort=sort)
                stamp = time.strftime("%H:%M:%S")
                if as_json:
                    sys.stdout.write(jsonlib.dumps(to_builtins(rows), separators=(",", ":")) + "\n")
                    sys.stdout.flush()
                else:
                    from rich.console import Group
                    from rich.text import Text

                    t = output.build_table(TOP_COLUMNS, _top_rows(rows))
                    title = Text(f"{stamp}  {len(rows)} machines, every {period:g}s (Ctrl-C stops)", style="dim")
                    view = Group(title, t) if t is not None else Group(title, Text("no machines yet"))
                    if live is not None:
                        live.update(view, refresh=True)
                    else:
                        output.show(view)
                        sys.stdout.write("\n")
                await asyncio.sleep(period)
    finally:
        if live is not None:
            live.stop()


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
    app.command("top")(top)
