"""The SSH listener's front door: the PROXY protocol header from trusted load balancers.

``asyncssh.create_server(..., tunnel=ProxyListener(...))``: asyncssh hands
a listener passed as ``tunnel`` a factory of SSH connections and lets it
accept them (the duck-typed ``create_server(factory, host, port)`` its
maintainer shows for tunnels, ronf/asyncssh#625). Each accepted socket is
first served by a ``_Gate`` protocol:

* from an address in ``proxy_protocol_from``: the gate reads the PROXY header
  (``proxyproto.parse``, over as many reads as it takes, within
  ``HEADER_TIMEOUT``) **before** the SSH connection exists, so nothing is sent
  to the client first; then it makes the SSH connection with the client's
  real address as its ``peername`` (``proxied_by`` names the balancer), hands
  it the transport and the bytes after the header. A malformed header, none,
  or a silence is refused: a warning naming the proxy, and the socket closed.
* from any other address: the SSH connection is made at once, as without
  this module; the gate only looks at the first bytes the client sends, and
  closes a connection that starts with a PROXY header (an untrusted address
  cannot choose the source it is counted under), then steps aside.

The SSH connection then owns the transport (``set_protocol``): no byte of a
settled connection passes through here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from . import proxyproto

log = logging.getLogger("centrality.proxy")

#: Seconds a trusted proxy has to send the whole header (HAProxy sends it at once).
HEADER_TIMEOUT = 5.0


class ProxyListener:
    """What asyncssh calls to listen: accepts, then the gate decides (see the module)."""

    def __init__(self, trusted: tuple[proxyproto.Network, ...], *, backlog: int = 100,
                 header_timeout: float | None = None, refused: dict[str, int] | None = None) -> None:
        self.trusted = trusted
        self.backlog = backlog
        self.header_timeout = HEADER_TIMEOUT if header_timeout is None else header_timeout
        #: Connections refused here, by why: admission's counters (``status`` shows them).
        self.refused = {} if refused is None else refused
        self.refused.setdefault("proxy_header", 0)
        self.refused.setdefault("proxy_untrusted", 0)

    async def create_server(self, session_factory: Callable, host: str, port: int) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Gate(self, lambda: session_factory(host, port)),
                                        host or None, port, backlog=self.backlog)

    def __bool__(self) -> bool:  # asyncssh tests ``if tunnel:``
        return True


class _Gate(asyncio.Protocol):
    def __init__(self, listener: ProxyListener, make_connection: Callable) -> None:
        self.listener = listener
        self.make_connection = make_connection
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.trusted = False
        self.buffer = b""
        self.inner: asyncio.Protocol | None = None  # the SSH connection, once made
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = (str(peer[0]), int(peer[1]))
        self.trusted = proxyproto.trusted(self.peer[0], self.listener.trusted)
        if self.trusted:
            self.timer = asyncio.get_running_loop().call_later(self.listener.header_timeout, self._silent)
        else:
            self.inner = self.make_connection()
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.trusted:
            self._read_header()
        else:
            self._check_untrusted()

    def _read_header(self) -> None:
        try:
            header = proxyproto.parse(self.buffer)
        except proxyproto.HeaderError as exc:
            self._refuse("proxy_header", f"refused a connection from proxy {_show(self.peer)}: {exc}")
            return
        if header is None:
            return
        self.timer.cancel()
        rest, self.buffer = self.buffer[header.length:], b""
        conn = self.make_connection()
        if header.source is not None:
            conn.set_extra_info(peername=header.source, proxied_by=self.peer)
        self._hand_over(conn, rest)

    def _check_untrusted(self) -> None:
        looks = proxyproto.starts_like_header(self.buffer)
        if looks is None:
            return
        if looks:
            self._refuse("proxy_untrusted",
                         f"refused a PROXY protocol header from {_show(self.peer)}: not a trusted proxy "
                         "(only addresses in proxy_protocol_from may send one)")
            return
        rest, self.buffer = self.buffer, b""
        self._hand_over(None, rest)

    def _hand_over(self, conn, data: bytes) -> None:
        inner = self.inner = conn or self.inner
        self.transport.set_protocol(inner)
        if conn is not None:
            inner.connection_made(self.transport)
        if data and not self.transport.is_closing():
            inner.data_received(data)

    def _silent(self) -> None:
        self.timer = None
        self._refuse("proxy_header", f"refused a connection from proxy {_show(self.peer)}: no PROXY protocol "
                     f"header within {self.listener.header_timeout:g}s")

    def _refuse(self, why: str, message: str) -> None:
        self.listener.refused[why] += 1
        log.warning("%s", message)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.buffer = b""
        self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inner is not None:  # untrusted, closed before its first bytes were looked at
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


def _show(peer: tuple[str, int]) -> str:
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
