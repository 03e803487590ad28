"""One module per command group. Each has ``register(app)``."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import typer

from .. import output


def operator_call(ctx: typer.Context, *argv: str) -> Any:
    """Make one operator request on the selected context; exit on error."""

    async def go():
        from centrality_core.client import OperatorClient

        async with OperatorClient(ctx.obj["context"], share=True) as client:
            return await client.call(*argv)

    return output.run(go)


def ask(ctx: typer.Context, method: Callable[[Any], Awaitable[Any]]) -> Any:
    """A typed request of the operator client (``lambda client: client.machines_ls()``); exit on error."""

    async def go():
        from centrality_core.client import OperatorClient

        async with OperatorClient(ctx.obj["context"], share=True) as client:
            return await method(client)

    return output.run(go)


def answer(ctx: typer.Context, *argv: str) -> Any:
    """The data of a request that must succeed; a non-zero status exits with it."""
    reply = operator_call(ctx, *argv)
    if reply.status:
        data = reply.data if isinstance(reply.data, dict) else {}
        output.fail(str(data.get("reason") or f"request failed with status {reply.status}"), reply.status,
                    data.get("error"))
    return reply.data


JSON = typer.Option(False, "--json", callback=output.set_json_mode,
                    help="Print one JSON document instead of a table (an error document on failure).")


def _machine_names(ctx: typer.Context, incomplete: str) -> list[str]:
    from ..completion import machine_names

    return machine_names(ctx, incomplete)


#: A machine's name; <TAB> completes it from the control plane.
MACHINE = typer.Argument(..., metavar="NAME", help="The machine's name.", autocompletion=_machine_names)
