"""Turn monotonically increasing counters into per-second rates.

Pure: no clock, no I/O. The caller passes the counter value and the time it
was read (seconds, any clock; ``time.monotonic()`` is best because it never
jumps).

Policy, chosen so that a rate is never negative and never invented:

* first sight of a key -> ``None`` (nothing to compare with);
* counter went backwards (device reset, driver reload, 32/64-bit wrap) ->
  ``None`` for that interval, and the new value becomes the baseline. We do not
  guess the wrap width: a missing point is better than a wrong one, and the
  next interval is exact again;
* time did not advance (``ts == previous ts``) -> ``None``, and the older
  baseline is *kept*, so the next update measures over the longer interval;
* time went backwards -> ``None``, and the new reading becomes the baseline;
* a non-finite value or time -> ``None``, state unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Collection


class RateTracker:
    """Per-key rate of change of counters, in counter units per second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def update(self, key: str, value: float, ts: float) -> float | None:
        """Record ``value`` at time ``ts`` (s); return the rate since the last update.

        Returns ``None`` (never a negative number) when no rate can be given;
        see the module docstring for the cases.
        """
        if not (math.isfinite(value) and math.isfinite(ts)):
            return None
        prev = self._last.get(key)
        if prev is None:
            self._last[key] = (value, ts)
            return None
        prev_value, prev_ts = prev
        dt = ts - prev_ts
        if dt == 0:
            return None  # keep the older baseline
        self._last[key] = (value, ts)
        if dt < 0 or value < prev_value:
            return None  # clock stepped back, or counter reset / wrapped
        return (value - prev_value) / dt

    def forget(self, key: str) -> None:
        """Drop the baseline of ``key`` (next update of it returns ``None``)."""
        self._last.pop(key, None)

    def retain(self, keys: Collection[str]) -> None:
        """Drop every baseline whose key is not in ``keys`` (vanished devices)."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: object) -> bool:
        return key in self._last
