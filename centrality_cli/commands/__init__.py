"""One module per command group. Each has ``register(app)``."""

from __future__ import annotations

from typing import Any

import typer

from .. import output


def operator_call(ctx: typer.Context, *argv: str) -> Any:
    """Make one operator request on the selected context; exit on error."""

    async def go():
        from ..client import OperatorClient

        async with OperatorClient(ctx.obj["context"]) as client:
            return await client.call(*argv)

    return output.run(go)


def answer(ctx: typer.Context, *argv: str) -> Any:
    """The data of a request that must succeed; a non-zero status exits with it."""
    reply = operator_call(ctx, *argv)
    if reply.status:
        output.fail(f"request failed with status {reply.status}", reply.status)
    return reply.data


JSON = typer.Option(False, "--json", help="Print one JSON document instead of a table.")
