"""The request table: ``@request`` registers a handler under a path with its
arguments and whether it writes; ``handle`` parses one command line, checks the
role and runs the handler with a ``Ctx``."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from centrality_core.errors import Forbidden, NotFound, UsageError

from ..peer import Peer
from ..services import RequestServices


@dataclass
class Reply:
    data: Any
    status: int = 0


@dataclass
class Ctx:
    #: The parts of the control plane a request uses (registry, flags, store...).
    services: RequestServices
    #: The connection the request came in on (its key, role, actor).
    conn: Peer
    #: Writes one JSON line to the client now (for requests that stream).
    emit: Callable[[Any], None]
    #: Bytes written to the client but not yet sent (for requests that stream).
    backlog: Callable[[], int] = lambda: 0
    #: The operator's session channel, for requests that relay raw bytes (``ssh``, ``cp``).
    session: Any = None

    @property
    def actor(self) -> str:
        return self.conn.actor

    @property
    def from_peer(self) -> bool:
        """Asked by another replica (``peering.py``): answer from this replica's own
        agents only, never ask the peers again."""
        return self.conn.role == "replica"


Handler = Callable[[Ctx, argparse.Namespace], Awaitable[Any]]


@dataclass
class Spec:
    path: str
    handler: Handler
    writes: bool
    help: str
    parser: argparse.ArgumentParser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # never print or exit inside the server
        raise UsageError(f"{self.prog}: {message}")


REQUESTS: dict[str, Spec] = {}


def request(path: str, *, writes: bool = False, help: str = "",
            args: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a request handler under ``path`` (e.g. ``"machines ls"``)."""

    def register(fn: Handler) -> Handler:
        parser = _Parser(prog=path, add_help=False, allow_abbrev=False)
        parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
        if args is not None:
            args(parser)
        REQUESTS[path] = Spec(path, fn, writes, help or (fn.__doc__ or "").strip().splitlines()[0], parser)
        return fn

    return register


def _lookup(argv: list[str]) -> tuple[Spec, list[str]]:
    for n in (2, 1):
        spec = REQUESTS.get(" ".join(argv[:n]))
        if spec is not None and len(argv) >= n:
            return spec, argv[n:]
    raise NotFound(f"unknown request {' '.join(argv[:2])!r}; `help` lists them")


async def handle(services: RequestServices, conn: Peer, command: str,
                 emit: Callable[[Any], None], backlog: Callable[[], int] = lambda: 0,
                 session: Any = None) -> Reply | None:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse request: {exc}") from None
    if not argv:
        raise UsageError("empty request; `help` lists them")
    spec, rest = _lookup(argv)
    if spec.writes and conn.role not in ("operator", "replica"):
        raise Forbidden(f"{spec.path!r} changes the fleet: {conn.role} keys may only read")
    ns = spec.parser.parse_args(rest)
    result = await spec.handler(Ctx(services, conn, emit, backlog, session), ns)
    return result if isinstance(result, Reply) or result is None else Reply(result)
