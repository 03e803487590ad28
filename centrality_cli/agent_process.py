"""The process ``centrality agent run`` becomes: the agent alone, without the CLI.

The agent runs on every machine for months, beside training jobs, so it should
hold only what it uses. Parsing the command line needs typer, which brings
click, pydantic (typer's coercion of values) and the whole command tree:
about 12 MB of a ~60 MB process that never uses them again. So once
``centrality agent run`` has parsed and checked its arguments it replaces
itself (``exec``: same process id, same signals and exit status for systemd or
the supervisor loop) with ``python -m centrality_cli.agent_process``, which
imports the agent runtime only. Logging is set up as the CLI had set it; a
fatal error is printed as every CLI error is (the CLI's output module is
imported then, on the way out).

Not a command for people: ``centrality agent run`` is.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path


#: The words of the command this process stands for, on its command line.
RUN = ("agent", "run")


def argv(config_dir: Path, level: int, asyncssh_level: int) -> list[str]:
    """The command line of the agent process for ``config_dir`` and the CLI's log levels."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", list)()  # -X, -W... of this interpreter
    # "agent run" kept on the command line: `ps` and `pgrep -f "agent run"` still find the agent.
    return [sys.executable, *flags, "-m", "centrality_cli.agent_process", *RUN, "--config-dir", str(config_dir),
            "--log-level", str(level), "--asyncssh-log-level", str(asyncssh_level)]


def become_agent(config_dir: Path) -> None:
    """Replace this process with the agent process (returns only if ``exec`` failed)."""
    command = argv(config_dir, logging.getLogger().level, logging.getLogger("asyncssh").level)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(command[0], command)
    except OSError:
        return


def configure_logging(level: int, asyncssh_level: int) -> None:
    from centrality_core.sanitize import log_formatter

    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("asyncssh").setLevel(asyncssh_level)


def main(args: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="centrality agent run", add_help=False)
    ap.add_argument("command", nargs="*", help=argparse.SUPPRESS)  # RUN, for `ps`
    ap.add_argument("--config-dir", type=Path, required=True)
    ap.add_argument("--log-level", type=int, default=logging.INFO)
    ap.add_argument("--asyncssh-log-level", type=int, default=logging.WARNING)
    opts = ap.parse_args(args)
    configure_logging(opts.log_level, opts.asyncssh_log_level)

    import asyncio

    from agent_runtime.main import run
    from centrality_core.errors import CentralityError

    try:
        asyncio.run(run(opts.config_dir))
    except (CentralityError, KeyboardInterrupt) as exc:
        from . import output  # the CLI's error format: `error: reason` on stderr, the error's exit code

        def again() -> None:
            raise exc

        try:
            output.run(again)
        except Exception as done:  # the typer.Exit(code) of output.fail (not a SystemExit)
            sys.exit(getattr(done, "exit_code", 1))


if __name__ == "__main__":
    main()
