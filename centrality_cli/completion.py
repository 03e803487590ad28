"""Shell completion of machine names (``centrality machines show gpu<TAB>``).

The names come from the control plane of the selected context (``--context``,
``$CENTRALITY_CONTEXT`` or the current one), asked with a short timeout. A
completion never prints an error: no answer means no candidates.
"""

from __future__ import annotations

import asyncio

import typer

from centrality_core.aio import within

#: Longest a <TAB> waits for the control plane.
TIMEOUT_S = 2.0


def machine_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Names of the machines that start with what was typed, in natural order."""
    root = ctx.find_root()
    context = root.params.get("context") if root is not None else None
    try:
        names = asyncio.run(within(_names(context), TIMEOUT_S))
    except Exception:  # noqa: BLE001 - completion must stay silent
        return []
    from centrality_core.hostlist import natural_key

    return sorted((n for n in names if n.startswith(incomplete)), key=natural_key)


async def _names(context: str | None) -> list[str]:
    from centrality_core.client import OperatorClient

    async with OperatorClient(context, share=True) as client:
        return [m.name for m in await client.machines_ls()]
