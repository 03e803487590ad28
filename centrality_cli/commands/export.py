"""``centrality export prometheus``: one scrape target for the whole fleet.

prometheus_client is imported here, inside the command, never at module
level: ``centrality --help`` and the agent stay light (tests/test_imports.py).
"""

from __future__ import annotations

import asyncio
import sys

import typer

from centrality_core import durations
from centrality_core.errors import ConfigError, UsageError

from .. import output

export_app = typer.Typer(help="Serve the fleet's metrics to other monitoring systems.", no_args_is_help=True)


@export_app.command("prometheus")
def prometheus(
    ctx: typer.Context,
    listen: str = typer.Option("127.0.0.1:9464", "--listen", help="HOST:PORT the HTTP endpoint listens on "
                               "(port 0: any free port, printed)."),
    interval: str = typer.Option("5s", "--interval", help="How often the control plane sends what changed "
                                 "(the agents' batch interval is 5 s)."),
    per_core: bool = typer.Option(False, "--per-core", help="Also export CPU utilisation per core "
                                  "(a 112-core machine: 112 more series)."),
    series_labels: int = typer.Option(8, "--series-labels", min=0, max=64,
                                      help="How many of a machine's labels go on each of its series (sorted "
                                           "by name); all of them are on centrality_machine_labels."),
    max_sample_age: str = typer.Option("60s", "--max-sample-age", help="A live machine whose latest sample "
                                       "is older than this exports no values (only its state)."),
) -> None:
    """Serve the fleet's latest values in the Prometheus text format (a viewer key is enough)."""
    try:
        max_age = durations.parse(max_sample_age)
        if durations.parse(interval) < 0.05:
            raise UsageError("--interval must be at least 50ms")
    except UsageError as exc:
        output.fail(exc.reason, exc.exit_code)
    try:
        from exporter.serve import Options, run
    except ImportError as exc:  # pragma: no cover - depends on the installation
        output.fail(f"the exporter needs prometheus_client ({exc.name} is missing): "
                    f"pip install 'centrality[export]'", ConfigError.exit_code)
    try:
        from centrality_core import contexts

        contexts.resolve((ctx.obj or {}).get("context"))  # fail now, with the reason, if there is none
    except ConfigError as exc:
        output.fail(exc.reason, exc.exit_code)
    opts = Options(listen=listen, context=(ctx.obj or {}).get("context"), interval=interval, per_core=per_core,
                   series_labels=series_labels, max_sample_age=max_age)

    def ready(address: str) -> None:
        print(f"serving the fleet's metrics on http://{address}/metrics", file=sys.stderr, flush=True)

    try:
        asyncio.run(run(opts, ready=ready))
    except OSError as exc:
        output.fail(f"cannot listen on {listen}: {exc.strerror or exc}", UsageError.exit_code)
    except UsageError as exc:
        output.fail(exc.reason, exc.exit_code)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
