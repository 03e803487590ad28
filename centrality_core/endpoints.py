"""Several control-plane addresses and pinned host keys: how they are written and tried.

A control plane is one address, one load-balanced name, or several replicas.
Wherever an address is configured (a join string, ``agent.toml``, an operator
context, ``--address``) it may be a comma-separated list, tried in the order
written: ``cp1:8022,cp2:8022``. Pinned host keys may be several too
(comma-separated fingerprints), and any of them is accepted from any of the
addresses: behind a load balancer a client cannot know which replica answers.

Pure: no sockets. ``sshlink.connect_any`` does the connecting.
"""

from __future__ import annotations

import zlib

from .contexts import split_address
from .errors import UsageError


def split(text: str) -> list[str]:
    """``"a, b,,a"`` -> ``["a", "b"]``: stripped, empty and repeated items dropped, order kept."""
    seen: dict[str, None] = {}
    for item in text.split(","):
        item = item.strip()
        if item:
            seen.setdefault(item)
    return list(seen)


def addresses(text: str) -> list[str]:
    """The addresses of ``text``, each checked (``HOST:PORT``, ``[V6]:PORT``, ``HOST``)."""
    items = split(text)
    if not items:
        raise UsageError("no control-plane address given: expected HOST:PORT[,HOST:PORT...]")
    for item in items:
        split_address(item)
    return items


def fingerprints(text: str) -> list[str]:
    """The host-key fingerprints of ``text``, each ``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    items = split(text)
    if not items:
        raise UsageError("no host-key fingerprint given: expected SHA256:...[,SHA256:...]")
    bad = [f for f in items if not f.startswith("SHA256:") or len(f) < 12]
    if bad:
        raise UsageError(f"invalid host-key fingerprint {bad[0]!r}: expected SHA256:... "
                         "(as `centrality status` or `ssh-keygen -l` prints it)")
    return items


def join(items: list[str]) -> str:
    return ",".join(items)


class Rotation:
    """The order in which to try a control plane's addresses.

    Each round starts with the address that last worked, then goes on through
    the others in the order written, so an agent stays with the replica it is
    on and moves to the next one when that replica dies. Until one has worked,
    the first address tried is chosen by ``spread`` (a machine's name), so a
    fleet given the same list of replicas spreads over them evenly instead of
    all landing on the first; the same name always starts at the same one.
    """

    def __init__(self, addresses: list[str], spread: str = "") -> None:
        if not addresses:
            raise ValueError("no addresses")
        self.addresses = list(addresses)
        self._start = zlib.crc32(spread.encode()) % len(self.addresses) if spread else 0

    def round(self) -> list[str]:
        n = len(self.addresses)
        return [self.addresses[(self._start + i) % n] for i in range(n)]

    def worked(self, address: str) -> None:
        self._start = self.addresses.index(address)

    @property
    def current(self) -> str:
        return self.addresses[self._start]
