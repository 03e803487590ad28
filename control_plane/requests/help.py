"""``help``: the requests this control plane answers."""

from __future__ import annotations

import argparse
from typing import Any

from .dispatch import REQUESTS, Ctx, request


@request("help")
async def _help(ctx: Ctx, ns: argparse.Namespace) -> Any:
    """List the requests this control plane answers."""
    return [{"request": s.path, "writes": s.writes, "help": s.help,
             "usage": s.parser.format_usage().strip().removeprefix("usage: ")}
            for s in sorted(REQUESTS.values(), key=lambda s: s.path)]
