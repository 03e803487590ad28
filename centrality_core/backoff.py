"""Jittered exponential backoff for reconnects (pure; the caller sleeps)."""

from __future__ import annotations

import random


class Backoff:
    """Delays grow ``initial * factor**n`` up to ``maximum``; each is drawn from
    the upper half of that range ("equal jitter"), so a fleet that lost its
    control plane at the same instant does not come back at the same instant."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        # The exponent is capped so that a days-long outage cannot overflow.
        ceiling = min(self.maximum, self.initial * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0
