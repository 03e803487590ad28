"""The history pass: compaction into chunks, retention per tier, the store-size bound.

Runs every ``compact_interval`` as its own task. Every store call goes to the
writer's thread (SQLite takes one writer at a time) in small transactions of
a few dozen machines, so batch writes, and therefore agent acks, wait at
most one small transaction behind it.

Every machine's raw window closes on the same wall-clock boundary, so the whole
fleet's raw tier becomes due at once. A pass compacts at most its share of the
fleet (``raw_budget``), carrying on where the last pass stopped: the work is
spread over the first half of the next window instead of holding the writer for
minutes just after the boundary.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Callable

from centrality_core import runtime, timefmt
from centrality_core.errors import StoreError
from centrality_core.settings import ServerSettings

from .store.chunks import Chunks
from .writer import StoreWriter

log = logging.getLogger("centrality.history")

#: The share of a raw window over which its compaction is spread.
RAW_SPREAD = 0.5
#: Machines a pass may always compact, however small the fleet (a few transactions).
RAW_MIN_PER_PASS = 64


class Compactor:
    def __init__(self, chunks: Chunks, writer: StoreWriter, settings: ServerSettings,
                 clock: Callable[[], float] = time.time, fleet_size: Callable[[], int] = lambda: 0) -> None:
        self.chunks = chunks
        self.writer = writer
        self.settings = settings
        self.clock = clock
        #: Machines known to this control plane: what the raw tier's compaction is spread over.
        self.fleet_size = fleet_size
        #: The last machine whose raw tier was compacted ("": start a new round), the
        #: machines compacted since the round began, and the most any round compacted
        #: (the fleet the store holds, should ``fleet_size`` know fewer).
        self.raw_after = ""
        self.raw_round = 0
        self.raw_round_max = 0
        self.last_pass: float | None = None
        self.last_error: str | None = None
        self.totals = {"chunks": 0, "rows": 0, "values": 0}
        #: What the size bound dropped (chunks, bytes; per tier with the samples' time span)
        #: and when, for ``status``.
        self.bound_dropped: dict = {"chunks": 0, "bytes": 0, "last": None, "tiers": {}}
        #: The last pass left the store above the bound with only the newest data in it
        #: (``Chunks.enforce_size``: it keeps what is not compacted and each machine's newest chunks).
        self.bound_unmet = False
        #: The bound used when ``max_store_size`` is not set (``Chunks.default_bound``,
        #: measured once, at the first pass) and how it was chosen.
        self.default_bound: tuple[int, str] | None = None
        self.disk_bytes: int | None = None

    @property
    def bound(self) -> int | None:
        """The store-size bound in force: ``max_store_size``, else the default (once known)."""
        if self.settings.max_store_size:
            return self.settings.max_store_size
        return self.default_bound[0] if self.default_bound else None

    def retention(self) -> dict[int, float]:
        s = self.settings
        return {0: s.raw_retention, 1: s.rollup_retention, 2: s.hour_retention}

    def raw_budget(self) -> int:
        """Machines one pass may compact in the raw tier: the fleet over the passes in
        ``RAW_SPREAD`` of a window (10,000 machines, 30-minute windows, a pass a minute: 667)."""
        s = self.settings
        passes = max(1.0, s.chunk_seconds * RAW_SPREAD / max(s.compact_interval, 1e-3))
        fleet = max(self.fleet_size(), self.raw_round_max)
        return max(RAW_MIN_PER_PASS, math.ceil(fleet / passes))

    async def _drain(self, fn, *, after: str | None = None, budget: int | None = None,
                     **kwargs) -> tuple[str, int]:
        """Call ``fn`` until it has nothing left. With ``after`` (the raw and minute tiers):
        machine after machine, from ``after``, for up to ``budget`` machines; returns where
        it stopped ("" once it got to the end) and the machines done. Without (tier 2):
        until it makes no chunk."""
        by_machine = after is not None
        done_machines = 0
        while True:
            extra = {"after": after} if by_machine else {}
            if budget is not None:  # the raw tier, which always names its max_machines
                extra["max_machines"] = min(kwargs["max_machines"], budget - done_machines)
            done = await self.writer.call(fn, self.clock(), **{**kwargs, **extra})
            for k in self.totals:
                self.totals[k] += done[k]
            if by_machine:
                if done["last"] is None:
                    return "", done_machines
                after = done["last"]
                done_machines += done["machines"]
                if budget is not None and done_machines >= budget:
                    return after, done_machines
            elif not done["chunks"] and not done["rows"]:
                return "", 0
            await asyncio.sleep(0)

    async def _compact_raw(self) -> None:
        """This pass's share of the raw tier: on from where the last pass stopped, and into
        the next round once this one ends. A batch arriving after its window was compacted
        makes a chunk of its own (read as one series all the same): the grace waits a little
        for stragglers first. 16 machines' 10 minutes per transaction (5 machines of 30-minute
        windows): the writer's flushes (and so agents' acks) wait at most one such
        transaction (~0.1 s for GPU nodes)."""
        s = self.settings
        budget = self.raw_budget()
        mid_round = bool(self.raw_after)
        while budget > 0:
            self.raw_after, machines = await self._drain(
                self.chunks.compact_raw, after=self.raw_after, budget=budget, window=s.chunk_seconds,
                grace=min(60.0, s.chunk_seconds / 4),
                max_machines=max(1, min(64, int(16 * 600 / max(s.chunk_seconds, 1.0)))))
            budget -= machines
            self.raw_round += machines
            self.raw_round_max = max(self.raw_round_max, self.raw_round)
            if self.raw_after:
                return  # the budget is spent mid-round
            self.raw_round = 0  # the round ended
            if not mid_round:
                return  # a whole round in this pass
            mid_round = False  # the next round begins, with what is left of the budget

    async def run_once(self) -> None:
        await self.writer.call(self.chunks.prepare, self.clock())
        await self._compact_raw()
        await self._drain(self.chunks.compact_minutes, after="")
        await self._drain(self.chunks.compact_hours)
        dropped = await self.writer.call(self.chunks.apply_retention, self.clock(), self.retention())
        if any(dropped.values()):
            log.info("history retention: dropped %d partitions, %d chunks",
                     dropped["partitions"], dropped["chunks"])
        await self.resolve_bound()
        limit = self.bound
        if limit:
            bound = await self.writer.call(self.chunks.enforce_size, limit)
            self.disk_bytes = bound["disk_bytes"]
            self.bound_unmet = bound["over"]
            if bound["chunks"] or bound["partitions"]:
                self._note_dropped(bound)
                log.warning("metric history past its size bound (%d bytes on disk): dropped the %d oldest "
                            "chunks (%d bytes)", limit, bound["chunks"], bound["bytes"])
            if bound["over"]:
                log.warning("metric history: %d bytes on disk, above its bound of %d with only the newest "
                            "data left (not compacted yet, each machine's newest chunks): raise max_store_size",
                            bound["disk_bytes"], limit)
        # the pass's large temporaries (chunks encoded and decoded) go back to the system
        await self.writer.call(runtime.release_free_memory)
        self.last_pass = self.clock()

    def _note_dropped(self, bound: dict) -> None:
        d = self.bound_dropped
        d["chunks"] += bound["chunks"]
        d["bytes"] += bound["bytes"]
        d["last"] = self.clock()
        for tier, x in bound["tiers"].items():
            t = d["tiers"].setdefault(tier, {"chunks": 0, "bytes": 0, "oldest": None, "newest": None})
            t["chunks"] += x["chunks"]
            t["bytes"] += x["bytes"]
            t["oldest"] = x["oldest"] if t["oldest"] is None else min(t["oldest"], x["oldest"])
            t["newest"] = x["newest"] if t["newest"] is None else max(t["newest"], x["newest"])

    async def resolve_bound(self) -> None:
        """Measure the default bound, once, when ``max_store_size`` is not set."""
        if not self.settings.max_store_size and self.default_bound is None:
            self.default_bound = await self.writer.call(self.chunks.default_bound)
            log.info("metric history bound: %d bytes on disk (%s; max_store_size sets another)",
                     *self.default_bound)

    async def run(self) -> None:
        try:
            await self.resolve_bound()  # the free disk at start
        except StoreError as exc:
            log.warning("history bound not measured yet: %s", exc.reason)
        while True:
            await asyncio.sleep(self.settings.compact_interval)
            try:
                await self.run_once()
                self.last_error = None
            except StoreError as exc:
                self.last_error = exc.reason
                log.warning("history pass failed: %s", exc.reason)
            except Exception as exc:  # a bug, not the database: said, and the next pass tries again
                reason = f"internal: {exc!r}"[:300]
                if reason != self.last_error:
                    log.exception("history pass failed unexpectedly")
                self.last_error = reason

    def status(self) -> dict:
        """What ``status`` shows of the history pass."""
        return {"last_pass": self.last_pass, "error": self.last_error,
                "max_store_size": self.bound,
                "bound_source": ("max_store_size" if self.settings.max_store_size
                                 else self.default_bound[1] if self.default_bound else None),
                "disk_bytes": self.disk_bytes,
                "bound_dropped_chunks": self.bound_dropped["chunks"],
                "bound_dropped_bytes": self.bound_dropped["bytes"],
                "bound_dropped_at": self.bound_dropped["last"],
                # Per tier: chunks and bytes dropped, and the samples they held (ISO times).
                "bound_dropped_tiers": {tier: {**x, "oldest": timefmt.iso(x["oldest"]),
                                               "newest": timefmt.iso(x["newest"])}
                                        for tier, x in self.bound_dropped["tiers"].items()},
                "bound_unmet": self.bound_unmet}
