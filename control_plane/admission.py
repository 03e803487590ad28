"""Who may open a connection now: pure bookkeeping, no sockets.

Three bounds protect the control plane from a client that connects and
never becomes useful (OpenSSH's MaxStartups, PerSourcePenalties and
LoginGraceTime play the same roles):

* a connection rate per source address (a token bucket: ``burst`` at once,
  then ``rate`` a second);
* SSH handshakes in progress at once, fleet-wide (``max_handshakes``): in a
  reconnect storm, serving them in turn finishes them where interleaving
  thousands makes each too slow to beat its timeout; a connection turned
  away is told when to come back (``pacing.py``: return slots spaced by the
  measured handshake rate);
* enrolling connections (an unknown key logged in as the join user, not yet
  registered) per source address.

The login grace (a timer per connection) lives with the connection; this
module only counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .pacing import Pacer

#: Source addresses whose buckets are remembered at most; past it the fullest
#: (least recently refilled) are dropped, so a spoofing flood cannot grow memory.
MAX_TRACKED_SOURCES = 65_536


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Admission:
    rate: float = 10.0            # new connections a second per source; 0: unlimited
    burst: int = 10               # connections a source may open at once
    max_handshakes: int = 128     # fleet-wide, not yet authenticated
    max_enrolling: int = 32       # per source; 0: unlimited
    clock: Callable[[], float] = time.monotonic
    handshakes: int = 0
    refused: dict[str, int] = field(default_factory=lambda: {"rate": 0, "busy": 0, "enrolling": 0})
    pacer: Pacer = field(default_factory=Pacer)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _enrolling: dict[str, int] = field(default_factory=dict)

    def connect(self, source: str) -> str | None:
        """A TCP connection arrived. None: go on (a handshake is counted); else why not."""
        if self.rate > 0 and not self._take(source):
            self.refused["rate"] += 1
            return "rate"
        if self.handshakes >= self.max_handshakes:
            self.refused["busy"] += 1
            return "busy"
        self.handshakes += 1
        return None

    def handshake_over(self, completed: bool = False) -> None:
        """A counted handshake ended: ``completed`` (authenticated), or failed / gone."""
        self.handshakes -= 1
        if completed:
            self.pacer.handshake_done(self.clock())

    def retry_after(self) -> float:
        """Seconds after which a connection turned away as busy now should come back."""
        return self.pacer.retry_after(self.clock(), self.handshakes)

    def enrol(self, source: str) -> bool:
        """An enrolling connection authenticated: may it stay? (counted when True)"""
        n = self._enrolling.get(source, 0)
        if self.max_enrolling and n >= self.max_enrolling:
            self.refused["enrolling"] += 1
            return False
        self._enrolling[source] = n + 1
        return True

    def enrolled(self, source: str) -> None:
        """An enrolling connection registered or went away."""
        n = self._enrolling.get(source, 0) - 1
        if n > 0:
            self._enrolling[source] = n
        else:
            self._enrolling.pop(source, None)

    def enrolling(self, source: str) -> int:
        return self._enrolling.get(source, 0)

    def _take(self, source: str) -> bool:
        now = self.clock()
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) >= MAX_TRACKED_SOURCES:
                self._forget_full(now)
            b = self._buckets[source] = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold nothing worth keeping)."""
        full = [s for s, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst]
        for s in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[s]
