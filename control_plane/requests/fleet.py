"""What the fleet-wide read requests share: ask every peer at once, merge by machine.

A request asked by an operator answers its own machines (those whose agents
are connected here) from memory, asks each peer the same request and merges
(``fleetview.merge``): a peer's row is authoritative for a machine it holds;
machines held by a peer that did not answer within ``PEER_TIMEOUT`` are shown
as the store last recorded them, marked ``from_store``. A request asked by a
peer (``Ctx.from_peer``) answers for its own machines only.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, TypeVar

import msgspec

from centrality_core.client import OperatorClient
from centrality_core.errors import CentralityError

from ..fleetview import Merged, merge
from ..views import holder
from .dispatch import Ctx

#: Seconds a peer has to answer a read (connecting included) before its machines are
#: shown from the store. Peers are asked at once, so this bounds a request's latency.
PEER_TIMEOUT = 3.0

R = TypeVar("R")


async def ask_peers(ctx: Ctx, fn: Callable[[OperatorClient], Awaitable[Any]]) -> dict[str, Any | CentralityError]:
    """``fn`` on every peer at once (nothing when asked by a peer, or without peers)."""
    if ctx.from_peer:
        return {}
    return await ctx.services.peers.each(fn, timeout=PEER_TIMEOUT)


def own_and_others(ctx: Ctx) -> tuple[list[str], list[str]]:
    """Names of the machines served here, and of the rest of the registry."""
    own, others = [], []
    for m in ctx.services.registry.machines():
        (own if m.conn is not None else others).append(m.name)
    return own, others


async def fleet(ctx: Ctx, build: Callable[[str, float], R],
                ask: Callable[[OperatorClient], Awaitable[list[R]]]) -> Merged[R]:
    """Every machine's row: ``build(name, now)`` here, ``ask(peer)`` for the peers' machines."""
    answers = await ask_peers(ctx, ask)
    now = time.time()
    own, others = own_and_others(ctx)
    if ctx.from_peer:
        return Merged([build(n, now) for n in own])
    return merge([build(n, now) for n in own], [build(n, now) for n in others], answers)


class Presence(msgspec.Struct):
    """The least a merge needs of a machine: for counting (``status``, ``wait``)."""

    name: str
    state: str
    replica: str = ""
    from_store: bool = False


def presence(ctx: Ctx, serving: dict[str, list[str] | CentralityError]) -> Merged[Presence]:
    """Every machine's state, given the names each peer serves (or its error)."""
    reg, here = ctx.services.registry, ctx.services.endpoint.replica
    own, others = [], []
    for m in reg.machines():
        row = Presence(m.name, m.state.value, holder(m, here))
        (own if m.conn is not None else others).append(row)
    answers = {p: s if isinstance(s, BaseException) else [Presence(n, "live", p) for n in s]
               for p, s in serving.items()}
    return merge(own, others, answers)


def serving(ctx: Ctx) -> list[str]:
    """Names of the machines whose agents are connected here, sorted."""
    return sorted(m.name for m in ctx.services.registry.machines() if m.conn is not None)
