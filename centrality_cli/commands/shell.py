"""``centrality ssh NAME [-- CMD]``: a shell on a machine, through the control plane."""

from __future__ import annotations

from typing import List, Optional

import typer

from .. import output
from .exec import _DashDash


def ssh(ctx: typer.Context,
        name: str = typer.Argument(..., help="The machine."),
        force: bool = typer.Option(False, "--force", help="Open it on a drained machine too."),
        tty: Optional[bool] = typer.Option(None, "--tty/--no-tty", "-t/-T",
                                           help="Ask for a terminal (default: when stdin is one)."),
        extra: Optional[List[str]] = typer.Argument(None, hidden=True)) -> None:
    """Open a shell on a machine (or run CMD there): ssh NAME [-- CMD [ARGS...]]

    Relayed over the agent's own connection: no route, port or key on the
    machine is needed. Without CMD it is the login shell of the agent's
    run_as user. The local terminal is raw for the session (Ctrl-C goes to
    the machine) and restored when it ends. Exit status: the remote one
    (255 if the machine went away). Operators only; drained machines need
    --force. Plain OpenSSH: ssh -p PORT NAME@HOST [CMD].
    """
    if extra:
        output.fail(f"unexpected {extra[0]!r}: the command goes after --", 2)
    command = ctx.meta.get("centrality.command") or []

    async def go() -> int:
        from centrality_core.client import OperatorClient
        from ..terminal import run_shell

        # Logged in as the machine's name: the control plane's session on that machine
        # (the one kind of session it grants a PTY).
        async with OperatorClient(ctx.obj["context"], username=name) as client:
            return await run_shell(client.connection, " ".join(command) or None, tty_mode=tty, force=force)

    raise typer.Exit(output.run(go))


def register(app: typer.Typer) -> None:
    app.command("ssh", cls=_DashDash, context_settings={"allow_interspersed_args": True})(ssh)
