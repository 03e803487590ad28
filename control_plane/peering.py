"""Replicas reaching each other: one SSH connection to each running peer.

A replica logs in to its peers with its own key (``replica_ed25519_key`` in
the server directory) as the ``replica`` role, and pins each peer's host key.
Both are read from the ``replicas`` rows each replica writes at start: the
shared Postgres is the root of trust (whoever can write it controls the fleet
anyway), so nothing is copied between replicas by hand.

Over the connection a replica makes the requests an operator makes, with the
operator client (``centrality_core.client``). A request that comes from a
replica is answered from that replica's own agents only (``Ctx.from_peer``),
so a fan-out never recurses.

Connections are made when first needed and kept; one that was lost is made
again on the next use. ``update`` (each replica round) drops peers that
stopped and those whose address or host key changed (a restart).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from centrality_core import sshlink
from centrality_core.aio import within
from centrality_core.client import OperatorClient
from centrality_core.errors import CentralityError, ConnectError

log = logging.getLogger("centrality.peering")

#: The login name a replica gives its peers (the key decides the role; this is for logs).
REPLICA_USER = "replica"
#: Seconds to connect to a peer (TCP and SSH handshake).
CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class PeerAddress:
    name: str
    address: str
    host_fingerprint: str


class Peers:
    """The other replicas. Alone (SQLite, or the only replica) it has none, and a
    fan-out over it is answered by this process alone."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        #: The key this replica logs in with and its name (``join``, at start).
        self.key: Any = None
        self.own = ""
        self.connect_timeout = connect_timeout
        self._known: dict[str, PeerAddress] = {}
        self._clients: dict[str, OperatorClient] = {}
        self._connecting: dict[str, asyncio.Future] = {}

    def join(self, key: Any, own: str) -> None:
        self.key, self.own = key, own

    def update(self, leases: Iterable[Any]) -> None:
        """The running replicas (``store.replicas.Lease``), this one included or not."""
        known = {lease.name: PeerAddress(lease.name, lease.address, lease.host_fingerprint)
                 for lease in leases if lease.name != self.own and lease.host_fingerprint}
        for name in list(self._clients):
            if known.get(name) != self._known.get(name):
                self._drop(name)
        self._known = known

    def names(self) -> list[str]:
        return sorted(self._known)

    def address(self, name: str) -> str:
        """Where peer ``name`` listens ("" when it is not running)."""
        peer = self._known.get(name)
        return peer.address if peer is not None else ""

    def __contains__(self, name: str) -> bool:
        return name in self._known

    async def client(self, name: str) -> OperatorClient:
        """The connection to peer ``name`` (made now if need be), or ConnectError."""
        client = self._clients.get(name)
        if client is not None and not client.closed:
            return client
        peer = self._known.get(name)
        if peer is None:
            raise ConnectError(f"replica {name} is not running (no current lease)")
        pending = self._connecting.get(name)
        if pending is None:
            pending = self._connecting[name] = asyncio.ensure_future(self._connect(peer))
            pending.add_done_callback(lambda _f: self._connecting.pop(name, None))
        return await asyncio.shield(pending)

    async def _connect(self, peer: PeerAddress) -> OperatorClient:
        try:
            conn = await sshlink.connect(peer.address, peer.host_fingerprint, self.key,
                                         username=REPLICA_USER, timeout=self.connect_timeout,
                                         tcp_timeout=self.connect_timeout)
        except CentralityError as exc:
            raise type(exc)(f"replica {peer.name} at {peer.address}: {exc.reason}") from None
        if self._known.get(peer.name) != peer:  # it restarted or stopped meanwhile
            conn.close()
            raise ConnectError(f"replica {peer.name} changed while connecting to it")
        client = self._clients[peer.name] = OperatorClient.over(conn, peer.address)
        log.info("connected to replica %s at %s", peer.name, peer.address)
        return client

    async def each(self, fn: Callable[[OperatorClient], Awaitable[T]], *,
                   timeout: float) -> dict[str, T | CentralityError]:
        """``fn`` on every peer at once: each peer's answer, or the error that kept it
        (unreachable, refused, no answer within ``timeout``)."""
        names = self.names()
        return dict(zip(names, await asyncio.gather(*(self.ask(n, fn, timeout=timeout) for n in names))))

    async def ask(self, name: str, fn: Callable[[OperatorClient], Awaitable[T]], *,
                  timeout: float) -> T | CentralityError:
        """``fn`` on peer ``name``: its answer, or the error that kept it."""
        try:
            return await within(self.call(name, fn), timeout)
        except asyncio.TimeoutError:
            return ConnectError(f"replica {name} did not answer within {timeout:g}s")
        except CentralityError as exc:
            return exc

    async def call(self, name: str, fn: Callable[[OperatorClient], Awaitable[T]]) -> T:
        """``fn`` on peer ``name``'s client; a connection that breaks under it is dropped
        (made again on the next use) and reported as a ConnectError naming the peer."""
        client = await self.client(name)
        try:
            return await fn(client)
        except OSError as exc:  # the connection broke under the request
            self._drop(name)
            raise ConnectError(f"replica {name}: {exc}") from None
        except Exception as exc:
            import asyncssh

            if isinstance(exc, asyncssh.Error):
                self._drop(name)
                raise ConnectError(f"replica {name}: {exc.reason}") from None
            raise

    def _drop(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None and client.connection is not None:
            client.connection.close()

    async def close(self) -> None:
        conns = [c.connection for c in self._clients.values() if c.connection is not None]
        self._clients.clear()
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
