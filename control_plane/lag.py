"""Sample-to-stored delay over the last seconds, in fixed memory: pure, no I/O.

``status`` reports the p50 and p99 of how long samples took from being taken
on their machine to being stored here, over the last 30 s. Keeping every
sample's delay (as a list of batches) cost memory in proportion to the
samples: after a storm, when thousands of agents replay minutes of held
samples each, a window held millions of them, and sorting them held the event
loop for a second per ``status``.

Here each second of the window is a histogram over log-spaced bins (bin width
2 %, from 1 ms to 8 days; a delay under 1 ms, or negative when an agent's
clock runs ahead, counts as 0): recording costs one bin increment per sample,
memory is fixed (``window`` x ~1,000 counters), and a percentile is read off
the summed histogram, within 1 % of the exact figure.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np

#: The smallest delay told apart from 0, and the relative width of a bin.
LOW_S = 0.001
GROWTH = 1.02
HIGH_S = 8 * 86400.0
_SCALE = 1 / math.log(GROWTH)
#: Bin 0 is [0, LOW_S); bin i >= 1 is [LOW_S * GROWTH**(i-1), LOW_S * GROWTH**i); the last
#: also takes everything above HIGH_S.
BINS = 2 + int(math.log(HIGH_S / LOW_S) * _SCALE)


def bin_of(delay: float) -> int:
    if delay < LOW_S:  # under 1 ms, or negative (ingest refuses timestamps that are not finite)
        return 0
    return min(BINS - 1, 1 + int(math.log(delay / LOW_S) * _SCALE))


def bin_value(i: int) -> float:
    """The delay a bin stands for: 0, or the geometric middle of its range."""
    return 0.0 if i == 0 else LOW_S * GROWTH ** (i - 0.5)


class LagWindow:
    """Delays of the samples stored in each of the last ``seconds`` seconds."""

    def __init__(self, seconds: int = 60) -> None:
        self.seconds = seconds
        #: (whole second stored, its bin counts), oldest first.
        self._slots: deque[tuple[int, list[int]]] = deque()

    def _slot(self, second: int) -> list[int]:
        if self._slots and self._slots[-1][0] == second:
            return self._slots[-1][1]
        counts = [0] * BINS
        self._slots.append((second, counts))
        while self._slots[0][0] <= second - self.seconds:
            self._slots.popleft()
        return counts

    def add(self, stored_at: float, ts: Sequence[float]) -> None:
        """Samples taken at ``ts``, stored at ``stored_at``."""
        counts = self._slot(int(stored_at))
        for t in ts:
            counts[bin_of(stored_at - t)] += 1

    def percentiles(self, now: float, window: float, qs: Sequence[float]) -> list[float | None]:
        """The delays at quantiles ``qs`` of the samples stored in the last ``window`` s."""
        since = int(now - window)
        rows = [counts for second, counts in self._slots if second >= since]
        if not rows:
            return [None] * len(qs)
        total = np.asarray(rows, np.int64).sum(axis=0).cumsum()
        n = int(total[-1])
        if not n:
            return [None] * len(qs)
        return [round(bin_value(int(np.searchsorted(total, min(n - 1, int(q * n)) + 1))), 3) for q in qs]
