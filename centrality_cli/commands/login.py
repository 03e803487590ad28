"""``centrality login HOST:PORT[,HOST:PORT...]``: save a context for a remote control plane.

Several addresses (replicas, comma-separated) are tried in order by every
request on the context; several fingerprints are each accepted from any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import output


def login(
    address: str = typer.Argument(..., help="HOST:PORT of the control plane; several, comma-separated "
                                  "(replicas), are tried in order."),
    key: Optional[Path] = typer.Option(None, "--key", help="Private key to log in with "
                                       "(default: this user's operator key, created if missing)."),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Expected host-key "
                                              "fingerprint (SHA256:...; several, comma-separated). Without it, "
                                              "the keys seen now are pinned (trust on first use) and printed."),
    name: Optional[str] = typer.Option(None, "--name", help="Context name (default: the address)."),
    persist: str = typer.Option("", "--persist", metavar="DURATION",
                                help="Keep one SSH connection open for the next commands this long after "
                                     "the last (e.g. 10m), as OpenSSH's ControlPersist; default: none."),
) -> None:
    """Pin a remote control plane's host key and save it as a context."""

    async def go():
        from centrality_core import contexts, endpoints, paths, sharing, sshlink

        if persist:
            sharing.persist_seconds(persist)  # a bad duration is refused before anything is saved
        addresses = endpoints.join(endpoints.addresses(address))
        pinned = fingerprint and endpoints.join(endpoints.fingerprints(fingerprint))
        key_path = key or paths.config_dir() / "keys" / "operator_ed25519"
        if key is None and not key_path.exists():
            sshlink.generate_key(key_path)
            output.err_console().print(f"created key {key_path}.pub: ask an operator to run\n"
                                       f"  centrality keys add --role operator NAME {key_path.name}.pub",
                                       highlight=False)
        sshlink.load_private_key(key_path)
        seen = pinned or endpoints.join(endpoints.split(",".join(
            [await _scan(a) for a in endpoints.split(addresses)])))
        ctx = contexts.Context(address=addresses, fingerprint=seen, key=str(Path(key_path).resolve()),
                               persist=persist)
        # Prove it works before saving: pinning and our key are both checked.
        from centrality_core.client import OperatorClient

        ctx_name = name or addresses
        contexts.put(ctx_name, ctx, make_current=True)
        try:
            async with OperatorClient(ctx_name) as client:
                status = (await client.status()).data
        except Exception:
            ctxs = contexts.load()
            ctxs.contexts.pop(ctx_name, None)
            if ctxs.current == ctx_name:
                ctxs.current = ""
            contexts.save(ctxs)
            raise
        typer.echo(f"logged in to {addresses} as context {ctx_name!r} (host key {seen}, "
                   f"control plane v{status['version']})")

    output.run(go)


async def _scan(address: str) -> str:
    """The fingerprint a server presents now (trust on first use)."""
    import asyncssh

    from centrality_core import contexts, sshlink
    from centrality_core.errors import ConnectError

    host, port = contexts.split_address(address)
    try:
        key = await asyncssh.get_server_host_key(host, port)
    except (OSError, asyncssh.Error) as exc:
        raise ConnectError(f"cannot reach {address}: {exc}") from None
    if key is None:
        raise ConnectError(f"{address} presented no host key")
    fp = sshlink.fingerprint(key)
    output.err_console().print(f"warning: trusting host key {fp} seen now; pass --fingerprint to verify it",
                               highlight=False)
    return fp


def disconnect(ctx: typer.Context) -> None:
    """Close the context's shared connection (left open by --persist or $CENTRALITY_PERSIST), if any."""

    async def go():
        from centrality_core import contexts, sharing
        from centrality_core.errors import ConfigError

        _, context = contexts.resolve(ctx.obj["context"])
        try:
            sock = sharing.socket_path(context.address, context.fingerprint, context.key, context.user)
        except ConfigError:
            sock = None
        link = await sharing.Link.open(sock) if sock is not None else None
        if link is None:
            typer.echo("no shared connection open")
            return
        await link.quit()
        link.close()
        typer.echo("shared connection closed")

    output.run(go)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("disconnect")(disconnect)
