"""``centrality token create|ls|revoke``: join tokens for new agents."""

from __future__ import annotations

from typing import Optional

import typer

from .. import output
from . import JSON, operator_call

token = typer.Typer(help="Create and manage join tokens for agents.", no_args_is_help=True)


@token.command("create")
def create(ctx: typer.Context,
           ttl: str = typer.Option("1h", "--ttl", help="How long the token stays valid."),
           uses: int = typer.Option(1, "--uses", help="How many agents may join with it."),
           address: Optional[str] = typer.Option(
               None, "--address", help="HOST:PORT agents should connect to; several, comma-separated "
               "(replicas), are tried in turn [default: the control plane's --advertise]."),
           pin: list[str] = typer.Option(
               [], "--pin", help="Another host-key fingerprint agents accept (a replica with a key of "
               "its own); repeatable."),
           json: bool = JSON) -> None:
    """Print a join string for `centrality agent join`."""
    from centrality_core import endpoints, joinstring

    argv = ["token", "create", "--ttl", ttl, "--uses", str(uses)]
    if address:
        argv += ["--address", output.run(lambda: endpoints.join(endpoints.addresses(address)))]
    pins = output.run(lambda: endpoints.fingerprints(",".join(pin))) if pin else []
    t = operator_call(ctx, *argv).data
    if pins:  # the join string is the agent's to read: more pins need no server
        t["join"] = joinstring.with_pins(t["join"], pins)
    if json:
        return output.print_json(t)
    typer.echo(t["join"])
    output.err_console().print(
        f"token {t['id']}: {t['uses']} use(s), expires {t['expires_at']}; on each machine run:\n"
        f"  centrality agent join {t['join']}\n  centrality agent run", highlight=False, soft_wrap=True)


@token.command("ls")
def ls(ctx: typer.Context, json: bool = JSON) -> None:
    """List join tokens (their secrets are never shown again)."""
    rows = operator_call(ctx, "token", "ls").data
    if json:
        return output.print_json(rows)
    output.table(["ID", "USES", "EXPIRES", "CREATED BY", "REVOKED"],
                 ([r["id"], f"{r['uses']}/{r['max_uses']}", r["expires_at"], r["created_by"],
                   r["revoked_at"] or ""] for r in rows), empty="no tokens")


@token.command("revoke")
def revoke(ctx: typer.Context, id: str, json: bool = JSON) -> None:
    """Revoke a join token before it expires."""
    r = operator_call(ctx, "token", "revoke", id).data
    if json:
        return output.print_json(r)
    typer.echo(f"revoked token {r['id']}")


def register(app: typer.Typer) -> None:
    app.add_typer(token, name="token")
