"""What a session, a request and the key cache use of the SSH connection they came
in on (``ssh.ConnectionHandler`` is the one implementation). A type only: the
parts that take a connection need not import the SSH server."""

from __future__ import annotations

import logging
from typing import Any, Protocol


class Peer(Protocol):
    #: The connection's number, in log lines (``conn=12``).
    id: int
    #: HOST:PORT of the client (named by a trusted load balancer's PROXY header, if any).
    peer: str
    #: " via HOST:PORT" of that load balancer, or "".
    via: str
    #: The client key's SHA256 fingerprint, and its OpenSSH public key.
    fingerprint: str
    public_key: str
    #: The key's name in the store, and its role (``agent``, ``operator``, ``viewer``, ``enrolling``,
    #: ``replica`` for a peer replica).
    key_name: str
    role: str | None
    #: The machine an agent registered (None before, and for operators).
    machine: str | None
    #: The login name the client gave.
    username: str
    log: logging.LoggerAdapter
    #: The asyncssh connection (None once gone).
    conn: Any

    @property
    def actor(self) -> str:
        """``role:key name``, as events and the audit record who acted."""
        ...

    def settled(self) -> None:
        """The connection is what it came for (operator authenticated, agent registered)."""
        ...

    def close(self, reason: str = "") -> None:
        """Close the whole SSH connection."""
        ...
