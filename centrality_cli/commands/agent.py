"""``centrality agent join|run``: the agent on a machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from centrality_core.errors import UsageError

from .. import output

agent = typer.Typer(help="Join this machine to a control plane and run its agent.", no_args_is_help=True)

CONFIG_DIR = typer.Option(None, "--config-dir", help="Agent config directory "
                          "[default: ~/.config/centrality/agent].")


@agent.command("join")
def join(join_string: str = typer.Argument(..., help="From `centrality token create`; '-' reads it "
                                           "from stdin (keeps it off the command line)."),
         name: Optional[str] = typer.Option(None, "--name", help="Machine name [default: from the hostname]."),
         label: Optional[List[str]] = typer.Option(None, "--label", metavar="KEY=VALUE", help="Label for targeting "
                                                   "(repeatable); replaces the labels in agent.toml."),
         config_dir: Optional[Path] = CONFIG_DIR) -> None:
    """Generate this machine's key and pin the control plane; `agent run` then enrols it."""
    from agent_runtime.main import join as do_join

    if join_string == "-":
        join_string = sys.stdin.readline().strip()
    labels = None
    if label:
        labels = {}
        for item in label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                output.fail(f"--label {item!r}: expected KEY=VALUE", UsageError.exit_code)
            labels[key] = value
    path, cfg = output.run(lambda: do_join(join_string, name=name, config_dir=config_dir, labels=labels))
    typer.echo(f"joined {cfg.address} (host key {cfg.fingerprint}); config in {path}\n"
               f"next: centrality agent run{' --config-dir ' + str(config_dir) if config_dir else ''}")


@agent.command("run")
def run(config_dir: Optional[Path] = CONFIG_DIR) -> None:
    """Run the agent in the foreground until Ctrl-C / SIGTERM."""
    import logging

    from agent_runtime import config as agent_config

    from ..agent_process import become_agent

    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    config_dir = config_dir or agent_config.default_dir()
    # The agent runs for months: it becomes a process of its own without the CLI's modules.
    become_agent(config_dir)
    from agent_runtime.main import run as do_run  # only if exec failed: run it here

    output.run(lambda: do_run(config_dir))


def register(app: typer.Typer) -> None:
    app.add_typer(agent, name="agent")
