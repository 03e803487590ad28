"""``centrality keys ls|add|revoke``: who may log in to the control plane."""

from __future__ import annotations

from pathlib import Path

import typer

from centrality_core.errors import UsageError

from .. import output
from . import JSON, answer

keys = typer.Typer(help="Manage the SSH keys allowed to log in, and their roles.", no_args_is_help=True)


@keys.command("ls")
def ls(ctx: typer.Context, all: bool = typer.Option(False, "--all", help="Include revoked keys."),
       json: bool = JSON) -> None:
    """List keys with their role."""
    rows = answer(ctx, "keys", "ls", *(["--all"] if all else []))
    if json:
        return output.print_json(rows)
    output.table(["NAME", "ROLE", "FINGERPRINT", "CREATED", "BY", "REVOKED"],
                 ([r["name"], r["role"], r["fingerprint"], r["created_at"], r["created_by"],
                   r["revoked_at"] or ""] for r in rows))


@keys.command("add")
def add(ctx: typer.Context, name: str,
        pubkey_file: Path = typer.Argument(..., help="The person's public key (.pub file)."),
        role: str = typer.Option(..., "--role", help="operator (read and act) or viewer (read only)."),
        json: bool = JSON) -> None:
    """Let a person in with their public key, as an operator or a viewer."""
    if role not in ("operator", "viewer"):
        output.fail(f"--role must be operator or viewer, not {role!r}", UsageError.exit_code)
    try:
        public_key = pubkey_file.read_text().strip()
    except OSError as exc:
        output.fail(f"cannot read {pubkey_file}: {exc.strerror}", UsageError.exit_code)
    row = answer(ctx, "keys", "add", "--role", role, name, public_key)
    if json:
        return output.print_json(row)
    typer.echo(f"added {row['role']} key {row['name']} ({row['fingerprint']})")


@keys.command("revoke")
def revoke(ctx: typer.Context, key: str = typer.Argument(..., help="Key name or SHA256 fingerprint."),
           json: bool = JSON) -> None:
    """Revoke a key; connections using it are closed at once."""
    rows = answer(ctx, "keys", "revoke", key)
    if json:
        return output.print_json(rows)
    for r in rows:
        typer.echo(f"revoked {r['role']} key {r['name']} ({r['fingerprint']})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")
