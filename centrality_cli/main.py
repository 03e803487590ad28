"""``centrality``: the one console script. Thin: command groups live in ``commands/``."""

from __future__ import annotations

import logging
import os
from typing import Optional

import typer

from centrality_core import __version__
from centrality_core.sanitize import LOG_FORMAT, log_formatter

from .commands import agent, demo, export, keys, login, machines, metrics, provision, server, simulate, storage, token
from .commands import tui
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
    handler.setFormatter(log_formatter(LOG_FORMAT))
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
export.register(app)


def main() -> None:
    """Run the CLI. Usage errors are one ``error:`` line (a JSON document under ``--json``), exit 2;
    a missing optional dependency names the extra that brings it, exit 3."""
    import importlib
    import sys

    from . import helptext, output

    # the click typer uses (typer >= 0.26 vendors its own): its exceptions are where BadParameter is
    click = importlib.import_module(typer.BadParameter.__module__)

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    command = typer.main.get_command(app)
    helptext.polish(command)
    try:
        code = command.main(prog_name="centrality", standalone_mode=False)
    except getattr(click, "NoArgsIsHelpError", ()) as exc:  # `centrality` alone: the help
        exc.show()
        code = exc.exit_code
    except click.UsageError as exc:
        output.json_mode = output.json_mode or "--json" in sys.argv[1:]
        where = exc.ctx.command_path if exc.ctx is not None else "centrality"
        message = exc.format_message().rstrip(".")
        code = _fail(f"{message[:1].lower()}{message[1:]} (see `{where} --help`)", 2, "usage")
    except click.ClickException as exc:
        code = _fail(exc.format_message(), exc.exit_code, None)
    except typer.Abort:
        code = 1
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        from .extras import advice

        text = advice(exc, _command_path(command, sys.argv[1:]))
        if text is None:
            raise
        code = _fail(text, 3, "config")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(text: str, code: int, kind: str | None) -> int:
    from . import output

    try:
        output.fail(text, code, kind)
    except typer.Exit as done:
        return done.exit_code
    return code


def _command_path(root, args: list[str]) -> str:
    """``centrality machines drain`` from the arguments (options and values skipped)."""
    words, cmd = ["centrality"], root
    for arg in args:
        sub = getattr(cmd, "commands", {}).get(arg)
        if sub is None:
            if not arg.startswith("-") and len(words) > 1:
                break
            continue
        words.append(arg)
        cmd = sub
    return " ".join(words)
