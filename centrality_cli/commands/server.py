"""``centrality server``: run the control plane in the foreground."""

from __future__ import annotations

from typing import Optional

import typer

from .. import output


def server(
    listen: Optional[str] = typer.Option(None, "--listen", help="HOST:PORT to listen on [default: 127.0.0.1:8022]."),
    db: Optional[str] = typer.Option(None, "--db", help="Store URL [default: SQLite in the data dir]; "
                                     "e.g. postgresql+psycopg://user@host/centrality."),
    heartbeat_interval: Optional[str] = typer.Option(None, "--heartbeat-interval", help="Agent heartbeat period [default: 5s]."),
    limbo_after: Optional[str] = typer.Option(None, "--limbo-after", help="Silence before limbo [default: 15s]."),
    dead_after: Optional[str] = typer.Option(None, "--dead-after", help="Silence before dead [default: 10m]."),
    advertise: Optional[str] = typer.Option(None, "--advertise", help="HOST:PORT put in join strings "
                                            "(several, comma-separated: a replica set)."),
    replica: Optional[str] = typer.Option(None, "--replica", help="This replica's name among control planes "
                                          "on one Postgres [default: HOSTNAME-PORT]; not for SQLite."),
    peer_address: Optional[str] = typer.Option(None, "--peer-address", help="HOST:PORT where the other "
                                               "replicas reach this one [default: the listen address]."),
    replica_lease: Optional[str] = typer.Option(None, "--replica-lease", help="Silence after which a replica's "
                                                "machines go to limbo on the others [default: 15s]."),
    replica_renew_interval: Optional[str] = typer.Option(None, "--replica-renew-interval",
                                                         help="Lease renewal period [default: 5s]."),
    host_key: Optional[str] = typer.Option(None, "--host-key", help="Host private key file (one key shared "
                                           "by a replica set) [default: made in the data dir]."),
    proxy_protocol_from: Optional[str] = typer.Option(
        None, "--proxy-protocol-from", help="Load balancers (addresses or networks, comma-separated) whose "
        "connections start with a PROXY protocol header naming the client [default: none]."),
    migrate_to: Optional[str] = typer.Option(
        None, "--migrate-to", metavar="REVISION", help="Migrate the store to this schema revision and exit, "
        "without serving: 'head', or an earlier one to hand the store back to an earlier version "
        "(stop every control plane on the store first)."),
) -> None:
    """Run the control plane (SSH server, lifecycle, store) until Ctrl-C."""
    import asyncio
    import sys

    if migrate_to is not None:
        output.run(lambda: _migrate(db, migrate_to))
        return

    from centrality_core.settings import resolve_server
    from centrality_core.runtime import tune_gc, tune_malloc, use_uvloop
    from control_plane.server import serve

    def go():
        settings = resolve_server({
            "listen": listen, "db": db, "heartbeat_interval": heartbeat_interval,
            "limbo_after": limbo_after, "dead_after": dead_after, "advertise": advertise,
            "replica": replica, "peer_address": peer_address, "replica_lease": replica_lease,
            "replica_renew_interval": replica_renew_interval, "host_key": host_key,
            "proxy_protocol_from": proxy_protocol_from,
        })
        from centrality_core.lifecycle import Thresholds
        from centrality_core.errors import UsageError

        try:
            Thresholds(settings.heartbeat_interval, settings.limbo_after, settings.dead_after)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

        def ready(cp) -> None:
            print(f"centrality control plane v{cp.version} listening on {cp.address}\n"
                  f"  host key  {cp.fingerprint}\n  store     {cp.store.describe()}\n"
                  + (f"  replica   {cp.replica}\n" if cp.replica else "") +
                  f"  agents    go to limbo after {settings.limbo_after:g}s of silence, "
                  f"dead after {settings.dead_after:g}s\n"
                  f"  next      centrality token create   (then `centrality agent join ...` on each machine)",
                  file=sys.stderr, flush=True)

        use_uvloop()
        tune_gc()
        tune_malloc()
        asyncio.run(serve(settings, ready=ready))

    import logging

    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    output.run(go)


def register(app: typer.Typer) -> None:
    app.command("server")(server)


def _migrate(db: Optional[str], target: str) -> None:
    """``server --migrate-to``: the store's schema moved to ``target``, under the same
    lock a control plane takes on a SQLite store (refused while one runs on it)."""
    import sys

    from centrality_core.settings import resolve_server
    from control_plane.store import Store, exclusive

    settings = resolve_server({"db": db})
    lock = exclusive.claim(settings.db_url())
    store = Store(settings.db_url())
    try:
        was = store.migrate(target)
        print(f"{store.describe()}: schema {was} -> {store.schema_revision()}", file=sys.stderr)
    finally:
        store.close()
        if lock is not None:
            lock.release()
