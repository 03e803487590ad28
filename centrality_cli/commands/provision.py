"""``centrality provision`` and ``centrality deprovision``: agents on the hosts of a pyinfra inventory.

pyinfra is imported only by the provisioning worker process, never here (``--help`` stays light).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import output
from . import JSON

INVENTORY = typer.Argument(..., help="A pyinfra inventory file (inventory.py): hosts, groups, host data.")
LIMIT = typer.Option(None, "--limit", metavar="HOST|GROUP", help="Only this host or group (repeatable; globs match host names).")
DRY = typer.Option(False, "--dry", help="Show what would change on each host; change nothing.")
YES = typer.Option(False, "--yes", "-y", help="Go ahead without asking (required when not on a terminal).")


def provision(
    ctx: typer.Context,
    inventory: Path = INVENTORY,
    limit: Optional[List[str]] = LIMIT,
    dry: bool = DRY,
    yes: bool = YES,
    wait: str = typer.Option("120s", "--wait", metavar="DURATION", help="How long to wait for the agents to go live."),
    wheel: Optional[str] = typer.Option(None, "--wheel", envvar="CENTRALITY_AGENT_WHEEL", metavar="PATH",
                                        help="Agent wheel to install [default: built from this source]."),
    json: bool = JSON,
) -> None:
    """Install, join and start an agent on every host of an inventory; wait until each is live.

    Idempotent: a second run changes nothing and says so. Exit status 1 when any host failed.
    """
    _run(ctx, "provision", inventory, limit, dry, yes, wait, wheel, json)


def deprovision(
    ctx: typer.Context,
    inventory: Path = INVENTORY,
    limit: Optional[List[str]] = LIMIT,
    dry: bool = DRY,
    yes: bool = YES,
    json: bool = JSON,
) -> None:
    """Stop and remove the agent on every host of an inventory, and revoke its key."""
    _run(ctx, "deprovision", inventory, limit, dry, yes, "0", None, json)


def _run(ctx: typer.Context, command: str, inventory: Path, limit, dry: bool, yes: bool, wait: str,
         wheel: Optional[str], json: bool) -> None:
    from centrality_core import durations
    from provision import runner
    from provision.progress import Display
    from provision.results import print_table

    wait_s = output.run(lambda: durations.parse(wait))
    level = logging.getLogger().getEffectiveLevel()
    opts = runner.Options(
        inventory=inventory, limits=list(limit or []), dry=dry, yes=yes, wait_s=wait_s,
        context=ctx.obj.get("context") if ctx.obj else None, wheel=wheel,
        verbose=2 if level <= logging.DEBUG else 1 if level <= logging.INFO else 0,
        interactive=sys.stdin.isatty() and sys.stderr.isatty(),
    )
    display = Display(command, console=output.err_console())
    go = runner.provision if command == "provision" else runner.deprovision
    try:
        report = output.run(lambda: go(opts, display))
    finally:
        display.stop()
    if json:
        output.print_json(report.to_json())
    else:
        print_table(report, output.console())
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.command("provision")(provision)
    app.command("deprovision")(deprovision)
