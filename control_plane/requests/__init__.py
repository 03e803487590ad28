"""Operator requests: SSH exec commands named like the CLI commands, answered in JSON.

``ssh -p 8022 HOST machines ls`` runs the ``machines ls`` request. Each
request is a coroutine registered with ``@request``, which declares whether
it changes anything (operator keys only) or only reads (viewers too), and
its arguments (argparse). ``--json`` is accepted everywhere and changes
nothing: the answer is always one JSON document on stdout, or a JSON error
``{"error": CODE, "reason": TEXT}`` on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from centrality_core.errors import Forbidden, NotFound, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ..server import ControlPlane
    from ..ssh import ConnectionHandler


@dataclass
class Reply:
    data: Any
    status: int = 0


@dataclass
class Ctx:
    cp: ControlPlane
    conn: ConnectionHandler
    #: Writes one JSON line to the client now (for requests that stream).
    emit: Callable[[Any], None]
    #: Bytes written to the client but not yet sent (for requests that stream).
    backlog: Callable[[], int] = lambda: 0

    @property
    def actor(self) -> str:
        return self.conn.actor


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


async def handle(cp: ControlPlane, conn: ConnectionHandler, command: str,
                 emit: Callable[[Any], None], backlog: Callable[[], int] = lambda: 0) -> Reply | None:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse request: {exc}") from None
    if not argv:
        raise UsageError("empty request; `help` lists them")
    spec, rest = _lookup(argv)
    if spec.writes and conn.role != "operator":
        raise Forbidden(f"{spec.path!r} changes the fleet: {conn.role} keys may only read")
    ns = spec.parser.parse_args(rest)
    result = await spec.handler(Ctx(cp, conn, emit, backlog), ns)
    return result if isinstance(result, Reply) or result is None else Reply(result)


@request("help")
async def _help(ctx: Ctx, ns: argparse.Namespace) -> Any:
    """List the requests this control plane answers."""
    return [{"request": s.path, "writes": s.writes, "help": s.help,
             "usage": s.parser.format_usage().strip().removeprefix("usage: ")}
            for s in sorted(REQUESTS.values(), key=lambda s: s.path)]


# Register the request modules.
from . import exec, fleetops, gpus, keys, machines, metrics, status, subscribe, tokens  # noqa: E402,F401
