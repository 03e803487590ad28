"""When a connection turned away as busy should come back: pure, no sockets.

In a reconnect storm every agent reconnects within a second or two, and the
control plane serves ``max_handshakes`` of them at a time (``admission.py``).
Those it turns away used to back off on their own (jittered, exponential up
to 30 s): after a few refusals most of the fleet slept 15-30 s while the
control plane had nothing to do, then came back in a wave that was mostly
refused again.

Instead, the refusal carries a time to come back. The pacer hands out return
slots spaced by the rate at which handshakes are being completed (measured
over the last ``window`` seconds), one after another, so that the agents it
turned away arrive about as fast as it can serve them, and each waits about
as long as the queue in front of it takes: a storm of N finishes in about N
over the handshake rate, with the server never idle meanwhile.

Before any handshake has completed (just after a restart, when the whole
fleet arrives at once) the rate is not known; ``initial_rate`` is taken,
optimistic on purpose: an agent that comes back too early is only refused
again (a refusal costs a TCP accept and two packets, far less than a
handshake) and gets a slot from the measured rate then, where one told to
come back too late would leave the server idle.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

#: A delay is never longer than this: the agents' own backoff ceiling (``Backoff.maximum``).
#: Past it the queue the pacer would build is no better than the agents' own jittered
#: backoff: measured with a first join of 10,000 simulated machines on 2 shared cores, where
#: most handshakes timed out on the simulator's side, so the completion rate measured low
#: and a 300 s cap spread thousands of agents over 70-130 s (the join took over 13
#: minutes, against 259 s with the agents' own backoff).
MAX_DELAY = 30.0


@dataclass
class Pacer:
    initial_rate: float = 400.0   # handshakes a second assumed before any is measured
    min_rate: float = 5.0         # never spread the queue thinner than this
    window: float = 10.0          # seconds over which the handshake rate is measured
    max_delay: float = MAX_DELAY
    rng: random.Random = field(default_factory=random.Random)
    _done: deque = field(default_factory=deque)  # completion times within the window
    _next_slot: float = float("-inf")

    def handshake_done(self, now: float) -> None:
        """A handshake in progress completed (authenticated)."""
        self._done.append(now)
        self._forget(now)

    def rate(self, now: float) -> float:
        """Handshakes completed a second, as measured now (``initial_rate`` before any)."""
        self._forget(now)
        if len(self._done) < 2:
            return self.initial_rate
        # Over the span they took, not the whole window: just after a restart the
        # first completions span less than a second.
        span = max(now - self._done[0], 1.0)
        return max(self.min_rate, len(self._done) / span)

    def retry_after(self, now: float, in_progress: int) -> float:
        """Seconds after which a connection turned away now should come back.

        Slots follow each other at the measured rate; the first one after an
        idle spell is as far out as the ``in_progress`` handshakes take to finish.
        """
        step = 1.0 / self.rate(now)
        start = max(self._next_slot, now + in_progress * step)
        if start + step > now + self.max_delay:
            # The queue is longer than the cap: come back at a random point of its second
            # half, as the agents' own backoff would, rather than all at the cap at once.
            return round(self.rng.uniform(self.max_delay / 2, self.max_delay), 3)
        self._next_slot = start + step
        return round(self._next_slot - now, 3)

    def _forget(self, now: float) -> None:
        while self._done and self._done[0] < now - self.window:
            self._done.popleft()
