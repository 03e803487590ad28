"""``centrality exec`` (run a command on many machines) and ``centrality audit``."""

from __future__ import annotations

import asyncio
import sys
from typing import List, Optional

import typer
from typer.core import TyperCommand

from .. import output
from . import JSON, _machine_names, answer, ask


class _DashDash(TyperCommand):
    """Everything after ``--`` is the remote command, kept apart from the targets."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["centrality.command"] = args[i + 1:]
            args = args[:i]
        else:
            ctx.meta["centrality.command"] = []
        return super().parse_args(ctx, args)


def exec_(ctx: typer.Context,
          targets: Optional[List[str]] = typer.Argument(
              None, help="Names, globs (gpu-*) or hostlist ranges (gpu[01-16], node[1-3,7]).",
              autocompletion=_machine_names),
          label: Optional[List[str]] = typer.Option(None, "--label", "-l",
                                                    help="KEY=VALUE (or KEY): only machines with it; repeatable."),
          all_: bool = typer.Option(False, "--all", help="Every machine."),
          include_drained: bool = typer.Option(False, "--include-drained", help="Run on drained machines too."),
          timeout: str = typer.Option("30s", "--timeout", help="Per machine; the process group is killed then."),
          fanout: int = typer.Option(0, "--fanout", help="Machines running at once (default: all)."),
          max_output: str = typer.Option("1M", "--max-output", help="Output kept per machine (64k, 1M...)."),
          fold: bool = typer.Option(False, "--fold", help="Group identical outputs: gpu[01-12]: ..."),
          yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before running on many machines."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Only print the machines it would run on."),
          json: bool = JSON) -> None:
    """Run a command on machines over their agents' channels: exec [TARGET...] -- CMD [ARGS...]

    Only live machines run it; the others are listed as skipped with the
    reason (limbo, dead, drained). Output streams as it arrives, prefixed by
    the machine. Exit status: the worst of all machines (124 timed out,
    130 cancelled, 255 unreachable). Ctrl-C cancels it everywhere.
    """
    command = ctx.meta.get("centrality.command") or []
    if not command and not dry_run:
        output.fail("no command: put it after --, e.g. centrality exec 'gpu[01-04]' -- nvidia-smi -L", 2)
    options = dict(labels=label or (), all=all_, include_drained=include_drained, timeout=timeout,
                   fanout=fanout, max_output=max_output)
    if dry_run:
        return _dry_run(ctx, targets or [], command, options, json)

    from centrality_core.errors import CentralityError

    from ..execview import ExecView

    view = ExecView(fold=fold, as_json=json)
    try:
        asyncio.run(_stream(ctx, targets or [], command, dict(options, yes=yes), view,
                            may_ask=not json and sys.stdin.isatty()))
    except KeyboardInterrupt:  # the channel is closed: the control plane cancels it everywhere
        view.finish(interrupted=True)
        raise typer.Exit(130)
    except CentralityError as exc:
        if view.start is not None:
            view.finish(interrupted=True)
            output.json_mode = False  # under --json, that document (what ran, cancelled) is the one
        output.fail(exc.reason, exc.exit_code, exc.code)
    view.finish()
    raise typer.Exit(view.exit_code)


async def _stream(ctx: typer.Context, targets: list[str], command: list[str], options: dict, view, *,
                  may_ask: bool) -> None:
    from centrality_core.client import OperatorClient
    from centrality_core.errors import CentralityError, ConnectError

    async with OperatorClient(ctx.obj["context"]) as client:
        try:
            async for doc in client.exec(targets, command, **options):
                view.feed(doc)
        except CentralityError as exc:
            if exc.code != "confirm_required":
                raise
            if not may_ask or not typer.confirm(exc.reason.split(": confirm")[0] + ". Run it?"):
                raise
            async for doc in client.exec(targets, command, **dict(options, yes=True)):
                view.feed(doc)
    if view.summary is None:
        raise ConnectError("the control plane ended the request before it finished")


def _dry_run(ctx: typer.Context, targets: list[str], command: list[str], options: dict, json: bool) -> None:
    r = ask(ctx, lambda client: client.exec_dry_run(targets, command, **options))
    if json:
        return output.print_json(r)
    from centrality_core import fold as folding

    n = len(r.machines)
    typer.echo(f"would run on {n} machine{'s' if n != 1 else ''}: {r.machines_folded or '-'}")
    for g in folding.group({s.machine: s.reason for s in r.skipped}):
        typer.echo(f"skipped {g.folded}: {g.key} ({len(g)})")
    for expr in r.unknown:
        typer.echo(f"unknown: {expr}")


# ------------------------------------------------------------------ audit


def audit(ctx: typer.Context,
          id: Optional[str] = typer.Argument(None, help="One exec (its id, or the first characters)."),
          limit: int = typer.Option(50, "--limit", "-n", help="At most this many, newest first."),
          since: Optional[str] = typer.Option(None, "--since", help="Only newer than this (1h, 7d)."),
          actor: Optional[str] = typer.Option(None, "--actor", help="Only execs by this actor."),
          json: bool = JSON) -> None:
    """Every exec: who ran what, when, on which machines, and the exit codes."""
    argv = ["audit", "--limit", str(limit)]
    if since:
        argv += ["--since", since]
    if actor:
        argv += ["--actor", actor]
    if id:
        argv += ["--id", id]
    rows = answer(ctx, *argv)
    if json:
        return output.print_json(rows)
    if id and rows:
        return _audit_detail(rows[0])
    output.table(["TIME", "ID", "BY", "COMMAND", "MACHINES", "RESULT", "EXIT"],
                 ([r["started_at"], r["id"][:8], r["actor"], r["command"],
                   f"{r['machines_folded'] or '-'} ({len(r['machines'])})", _result(r),
                   "-" if r["exit_code"] is None else r["exit_code"]] for r in rows),
                 empty="no exec yet")


def _result(r: dict) -> str:
    if r["status"] == "running":
        return "running"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(r["counts"].items(), key=lambda kv: -kv[1]))
    return f"{r['status']}: {counts}" if r["status"] != "done" else counts or "-"


def _audit_detail(r: dict) -> None:
    output.table(["FIELD", "VALUE"], [
        ("id", r["id"]), ("by", r["actor"]), ("started", r["started_at"]),
        ("finished", r["finished_at"] or "-"), ("command", r["command"]), ("targets", r["selector"]),
        ("status", r["status"]), ("exit code", "-" if r["exit_code"] is None else r["exit_code"]),
        ("skipped", ", ".join(f"{s['machine']} ({s['reason']})" for s in r["skipped"]) or "-"),
    ], header=False)
    output.table(["MACHINE", "STATUS", "EXIT", "DURATION"],
                 ([name, v["status"], "-" if v["exit_code"] is None else v["exit_code"],
                   "-" if v["duration"] is None else f"{v['duration']:.2f}s"]
                  for name, v in r["results"].items()), empty="no machine ran it")


def register(app: typer.Typer) -> None:
    app.command("exec", cls=_DashDash, context_settings={"allow_interspersed_args": True})(exec_)
    app.command("audit")(audit)
