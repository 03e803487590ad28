"""``centrality machines drain|undrain|label`` and ``centrality health``."""

from __future__ import annotations

from typing import List, Optional

import typer

from centrality_core.documents import Drained, Undrained

from .. import output
from ..output import Markup
from . import JSON, MACHINE, _machine_names, answer, ask


TARGETS = typer.Argument(..., help="Names, globs or hostlist ranges (gpu[01-16]).", autocompletion=_machine_names)
LABELS = typer.Option(None, "--label", "-l", help="KEY=VALUE: only machines with this label; repeatable.")


def drain(ctx: typer.Context, targets: List[str] = TARGETS,
          reason: str = typer.Option(..., "--reason", "-r", help="Why: shown with the flag and kept in events."),
          label: Optional[List[str]] = LABELS, json: bool = JSON) -> None:
    """Drain machines: exec skips them (unless --include-drained) until undrained."""
    r = ask(ctx, lambda client: client.drain(targets, reason, labels=label or ()))
    _print_outcome(r, json, [("drained", "drained ", f": {reason}"), ("already", "already drained: ", "")], targets)


def undrain(ctx: typer.Context, targets: List[str] = TARGETS, label: Optional[List[str]] = LABELS,
            json: bool = JSON) -> None:
    """Undrain machines."""
    r = ask(ctx, lambda client: client.undrain(targets, labels=label or ()))
    _print_outcome(r, json, [("undrained", "undrained ", ""), ("not_drained", "not drained: ", "")], targets)


def _print_outcome(r: Drained | Undrained, json: bool, lines: list[tuple[str, str, str]],
                   targets: List[str]) -> None:
    """A drain/undrain answer: one line per non-empty group of machines (folded), unknown targets on
    stderr. A name given as such that matches no machine exits 9 (the others were done); names a
    range expands to (gpu[01-16] on a fleet of 8) are listed, not an error."""
    named_unknown = set(r.unknown) & set(targets)
    if json:
        output.print_json(r)
        raise typer.Exit(9 if named_unknown else 0)
    from centrality_core import hostlist

    for field, before, after in lines:
        if getattr(r, field):
            typer.echo(f"{before}{hostlist.fold(getattr(r, field))}{after}")
    for expr in r.unknown:
        typer.echo(f"unknown: {expr}", err=True)
    if named_unknown:  # the others were done; a name that matched nothing is still "not found"
        raise typer.Exit(9)


def label(ctx: typer.Context, name: str = MACHINE,
          changes: List[str] = typer.Argument(..., help="KEY=VALUE sets a label, KEY- removes it."),
          json: bool = JSON) -> None:
    """Set or remove a machine's labels (they win over the labels in its agent.toml)."""
    r = answer(ctx, "machines", "label", "--", name, *changes)
    if json:
        return output.print_json(r)
    typer.echo(f"{r['name']}: {output.labels(r['labels']) or '(no labels)'}")


def health(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="One machine (default: all).",
                                                                  autocompletion=_machine_names),
           unhealthy: bool = typer.Option(False, "--unhealthy", help="Only unhealthy machines."),
           json: bool = JSON) -> None:
    """Healthcheck results. Exit 1 when a machine shown is unhealthy."""
    argv = ["health"] + (["--unhealthy"] if unhealthy else []) + (["--", name] if name else [])
    rows = answer(ctx, *argv)
    if json:
        output.print_json(rows)
    elif name:
        _health_detail(rows[0])
    else:
        output.table(["NAME", "STATE", "HEALTH", "DRAINED", "FAILED CHECKS", "CHECKED"],
                     ([r["name"], Markup(output.state(r["state"])), Markup(_health(r)),
                       _drained(r), ", ".join(r["failed"]) or "-", r["checked_at"] or "-"] for r in rows),
                     empty="no machines" if not unhealthy else "no unhealthy machine")
        output.warn_unanswered(rows)
    if any(r["unhealthy"] for r in rows):
        raise typer.Exit(1)


def _health(r: dict) -> str:
    if r["unhealthy"]:
        return "[red]unhealthy[/]"
    return "[green]ok[/]" if r["checked_at"] else "unknown"


def _drained(r: dict) -> str:
    d = r.get("drain")
    return f"yes: {d['reason']} ({d['by']})" if d else "-"


def _health_detail(r: dict) -> None:
    output.table(["FIELD", "VALUE"], [
        ("name", r["name"]), ("state", Markup(output.state(r["state"]))), ("health", Markup(_health(r))),
        ("drained", _drained(r)), ("checked", r["checked_at"] or "never"),
    ], header=False)
    output.table(["CHECK", "RESULT", "DETAIL", "TOOK"],
                 ([c["name"], Markup("[green]pass[/]" if c["ok"] else "[red]FAIL[/]"), c.get("detail", ""),
                   f"{c.get('duration', 0):.2f}s"] for c in r["checks"]),
                 empty="no healthcheck results yet")


def register(app: typer.Typer) -> None:
    from .machines import machines

    machines.command("drain")(drain)
    machines.command("undrain")(undrain)
    machines.command("label")(label)
    app.command("health")(health)
