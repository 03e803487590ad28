"""``centrality``: the one console script. Thin: command groups live in ``commands/``."""

from __future__ import annotations

import logging
import os
from typing import Optional

import typer

from centrality_core import __version__
from centrality_core.sanitize import log_formatter

from .commands import agent, demo, keys, login, machines, metrics, provision, server, simulate, storage, token, tui
from .commands import copy, exec as exec_cmd, fleetops, gpus, shell

app = typer.Typer(
    name="centrality",
    help="Terminal-first control plane for GPU and CPU fleets, over SSH.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"centrality {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    context: Optional[str] = typer.Option(
        None, "--context", "-c", envvar="CENTRALITY_CONTEXT",
        help="Control plane to talk to (a name from contexts.toml; default: the current one)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-vv for debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = {"context": context}
    level = logging.WARNING - 10 * verbose
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])
    if verbose < 2:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


server.register(app)
agent.register(app)
machines.register(app)
keys.register(app)
token.register(app)
login.register(app)
demo.register(app)
metrics.register(app)
storage.register(app)
simulate.register(app)
provision.register(app)
tui.register(app)
exec_cmd.register(app)
fleetops.register(app)
shell.register(app)
copy.register(app)
gpus.register(app)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
