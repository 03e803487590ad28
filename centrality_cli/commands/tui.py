"""``centrality tui``: the live dashboard of the fleet (Textual).

Textual is imported here, inside the command, never at module level:
``centrality --help`` and the agent stay light (tests/test_imports.py).
"""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from centrality_core.errors import ConfigError

from .. import output


def run_dashboard(context: str | None, theme: str = "dark") -> None:
    """Run the dashboard against ``context`` until the user quits; closes the connection."""
    try:
        from tui.app import CentralityApp
        from tui.source import OperatorSource
    except ImportError as exc:  # pragma: no cover - depends on the installation
        output.fail(f"the dashboard needs Textual ({exc.name} is missing): pip install 'centrality[tui]'",
                    ConfigError.exit_code)
    from centrality_core.runtime import tune_gc

    source = output.run(lambda: OperatorSource(context))
    tune_gc()  # 10,000 rows decoded a second: default collections pause keys for ~0.1 s

    async def main() -> None:
        app = CentralityApp(source, theme=theme)
        try:
            await app.run_async()
        finally:
            await source.close()

    asyncio.run(main())


def tui(ctx: typer.Context,
        context: Optional[str] = typer.Option(None, "--context", "-c", help="Control plane to watch (a name from "
                                              "contexts.toml; default: the current one)."),
        theme: str = typer.Option("dark", "--theme", help="dark or light (Ctrl+T switches).")) -> None:
    """Live dashboard of the fleet: cluster, machine and events screens, pushed over SSH."""
    if theme not in ("dark", "light"):
        output.fail(f"--theme {theme!r}: expected dark or light", 2)
    run_dashboard(context or (ctx.obj or {}).get("context"), theme)


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
