"""Which agents hold their metrics back for a while after registering: pure, no sockets.

In a reconnect storm or a fleet's first join, every agent that registers
sends its whole backlog at once (the batches it made while away, merged), and
from then on a batch every few seconds. On a control plane that is still
handshaking thousands of agents, that ingest takes the CPU the handshakes
need: measured at 10,000 simulated machines on 2 cores, the ingest, its
rollups and the store writer took half the control plane's samples during the
first join, the handshakes under a tenth, and the more machines were live the
slower the rest joined.

So while a storm is on (at least ``storm_at`` handshakes in progress at once),
a registering agent (protocol 1.4) is told to hold its metrics back
(``Registered.metrics_hold``, at most ``max_hold`` seconds): it heartbeats,
runs commands and shells, and keeps sampling into its buffer, but sends no
batch. Once the storm has been over for ``quiet_for`` seconds the held agents
are released (``metrics_resume``), oldest first, up to ``release_rate`` a
second and only while the control plane keeps up (``ready``: the server asks
how long its store writer's queued writes have waited and how late its event
loop runs), so that the
backlogs arrive spread out rather than all at once. An agent held for
``max_hold`` is released whatever the storm does, and one whose release never
comes resumes on its own. Nothing is lost: the held samples are in the
agent's buffer, sent and acknowledged as any replay.

``max_hold`` is long (half an hour) on purpose: the releases are paced by
what the control plane can take, and a deadline that releases agents
regardless brings their backlogs in while it cannot. Measured with a first
join of 10,000 simulated machines on 2 cores: with a 60 s hold, agents
released while the join went on slowed it from about 65 registrations a
second to 10; with 300 s, the agents released at their deadline after the
join took the control plane's RSS to 3 GB (thousands of large replays being
received at once, each frame buffered until complete) and an operator's
``status`` 40 s.

Outside storms nothing is held: a machine that registers alone sends at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Generic, Hashable, TypeVar

#: Handshakes in progress at once that make a storm (a few machines restarting do not).
STORM_HANDSHAKES = 32
#: The longest a registered agent holds its metrics, whatever the control plane can take: the
#: lag its history may have after a storm (the agent's buffer keeps an hour).
MAX_HOLD = 1800.0
#: Held agents released a second at most once the storm is over (each then sends its backlog).
RELEASE_RATE = 50.0
#: Seconds without a storm before the releases start.
QUIET_FOR = 2.0

S = TypeVar("S", bound=Hashable)


@dataclass
class MetricHolds(Generic[S]):
    #: Handshakes in progress now (``Admission.handshakes``).
    in_progress: Callable[[], int]
    #: May more backlogs come now? (the control plane keeps up); deadlines do not ask.
    ready: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.monotonic
    storm_at: int = STORM_HANDSHAKES
    max_hold: float = MAX_HOLD
    release_rate: float = RELEASE_RATE
    quiet_for: float = QUIET_FOR
    #: Session -> when it must be released at the latest; oldest first (insertion order).
    _held: dict[S, float] = field(default_factory=dict)
    _storm_until: float = float("-inf")
    _credit: float = 0.0
    _last: float | None = None
    released: int = 0  # in all, for status

    def storm(self) -> bool:
        """Is a storm on (or over for less than ``quiet_for``)?"""
        now = self.clock()
        if self.in_progress() >= self.storm_at:
            self._storm_until = now + self.quiet_for
        return now < self._storm_until

    def hold(self, session: S) -> float:
        """``session`` registers now: seconds it should hold its metrics (0: none)."""
        if not self.storm():
            return 0.0
        self._held[session] = self.clock() + self.max_hold
        return self.max_hold

    def forget(self, session: S) -> None:
        """``session`` went away, or sent metrics (it resumed on its own)."""
        self._held.pop(session, None)

    def due(self) -> list[S]:
        """The sessions to release now: those held ``max_hold``, then, once the storm is
        over and while ``ready``, the oldest at ``release_rate`` a second. Call it often (a
        fraction of a second)."""
        now = self.clock()
        last, self._last = self._last, now
        out = []
        for session, deadline in self._held.items():  # oldest first: deadlines in order
            if deadline > now:
                break
            out.append(session)
        for session in out:
            del self._held[session]
        if self.storm() or not self._held or not self.ready():
            self._credit = 0.0
        else:
            # Releases accrue from the end of the storm (or the last look), at most a second's worth.
            elapsed = 0.0 if last is None else max(0.0, now - max(last, self._storm_until))
            self._credit = min(self._credit + elapsed * self.release_rate, max(1.0, self.release_rate))
            n = min(int(self._credit), len(self._held))
            self._credit -= n
            batch = list(islice(self._held, n))
            for session in batch:
                del self._held[session]
            out += batch
        self.released += len(out)
        return out

    def holding(self, session: S | None) -> bool:
        """Does ``session`` hold its metrics back now?"""
        return session is not None and session in self._held

    @property
    def held(self) -> int:
        return len(self._held)
