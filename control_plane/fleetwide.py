"""Requests whose answer comes from the agents (``health``, ``gpus``), fleet-wide.

The replica asked decides which machines the answer is about; those served
here are answered from here, those a peer replica holds are asked of that
peer, one request per peer naming its machines (``ask``), at once. The peer
answers from its own agents only (``Ctx.from_peer``). A peer that cannot
answer within ``PEER_TIMEOUT`` leaves its machines answered from this
replica's view (the shared store's, at the last sync) and marked with why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from centrality_core.aio import within
from centrality_core.errors import CentralityError

from .peer_exec import split
from .peering import Peers

#: Seconds a peer has to answer a read for its machines.
PEER_TIMEOUT = 10.0


@dataclass
class Answers:
    #: Machines answered from here.
    here: list[str]
    #: Per peer replica: the machines it was asked about.
    asked: dict[str, list[str]] = field(default_factory=dict)
    #: Per peer replica: its answer (a list of rows).
    rows: dict[str, list] = field(default_factory=dict)
    #: Per peer replica that did not answer: its machines, and why.
    failed: dict[str, tuple[list[str], str]] = field(default_factory=dict)


def holder(registry: Any, name: str) -> str:
    """The peer replica that holds a machine; "" when it is served here (or nowhere)."""
    m = registry.machine(name)
    if m is None or m.conn is not None:
        return ""
    return m.held_by


def elsewhere(peers: Peers, replica: str, name: str, what: str) -> str:
    """Why a relay of raw bytes (``ssh``, ``cp``) to ``name`` is not made from here: its
    agent is connected to another replica that this one does not relay to (asked by a
    peer itself, or a replica without a current lease)."""
    address = peers.address(replica)
    where = f"replica {replica} at {address}" if address else f"replica {replica}"
    return (f"{name} is held by {where}; connect there to {what} "
            f"(a context with that address: `centrality login`)")


def unreachable(peers: Peers, replica: str, name: str, why: str, what: str) -> str:
    """Why a relay through the peer holding ``name`` could not be opened."""
    address = peers.address(replica)
    where = f"replica {replica} at {address}" if address else f"replica {replica}"
    why = why.removeprefix(f"replica {replica} at {address}: ") if address else why
    return (f"{name} is held by {where}, which this replica cannot reach ({why}); "
            f"connect there to {what} (a context with that address: `centrality login`)")


def served_here(registry: Any, names: list[str]) -> list[str]:
    """What a peer answers for when asked: the machines whose agents are connected here."""
    return [n for n in names if (m := registry.machine(n)) is not None and m.conn is not None]


async def ask(peers: Peers, registry: Any, names: list[str],
              request: Callable[[Any, list[str]], Awaitable[list]], *,
              timeout: float = PEER_TIMEOUT) -> Answers:
    """``request(client, names)`` on every peer holding some of ``names``."""
    here, elsewhere = split(names, lambda n: holder(registry, n))
    out = Answers(here, asked=elsewhere)

    async def one(replica: str, theirs: list[str]) -> None:
        try:
            out.rows[replica] = await within(
                peers.call(replica, lambda client: request(client, theirs)), timeout) or []
        except asyncio.TimeoutError:
            out.failed[replica] = (theirs, f"replica {replica} did not answer within {timeout:g}s")
        except CentralityError as exc:
            why = exc.reason if replica in exc.reason else f"replica {replica}: {exc.reason}"
            out.failed[replica] = (theirs, why)

    await asyncio.gather(*(one(r, ns) for r, ns in elsewhere.items()))
    return out
