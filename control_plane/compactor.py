"""The history pass: compaction into chunks, retention per tier, the store-size bound.

Runs every ``compact_interval`` as its own task. Every store call goes to the
writer's thread (SQLite takes one writer at a time) in small transactions of
a few dozen machines, so batch writes, and therefore agent acks, wait at
most one small transaction behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from centrality_core import timefmt
from centrality_core.errors import StoreError
from centrality_core.settings import ServerSettings

from .store.chunks import Chunks
from .writer import StoreWriter

log = logging.getLogger("centrality.history")


class Compactor:
    def __init__(self, chunks: Chunks, writer: StoreWriter, settings: ServerSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.chunks = chunks
        self.writer = writer
        self.settings = settings
        self.clock = clock
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

    async def _drain(self, fn, *, by_machine: bool, **kwargs) -> None:
        """Call ``fn`` until it has nothing left: machine after machine (``after``)
        for the raw and minute tiers, until it makes no chunk for tier 2."""
        after = ""
        while True:
            extra = {"after": after} if by_machine else {}
            done = await self.writer.call(fn, self.clock(), **kwargs, **extra)
            for k in self.totals:
                self.totals[k] += done[k]
            if by_machine:
                if done["last"] is None:
                    return
                after = done["last"]
            elif not done["chunks"] and not done["rows"]:
                return
            await asyncio.sleep(0)

    async def run_once(self) -> None:
        s = self.settings
        await self.writer.call(self.chunks.prepare, self.clock())
        # A batch arriving after its window was compacted makes a chunk of its own
        # (read as one series all the same): wait a little for stragglers first.
        # 16 machines' 10 minutes per transaction (5 machines of 30-minute windows): the
        # writer's flushes (and so agents' acks) wait at most one such transaction (~0.1 s
        # for GPU nodes).
        await self._drain(self.chunks.compact_raw, by_machine=True, window=s.chunk_seconds,
                          grace=min(60.0, s.chunk_seconds / 4),
                          max_machines=max(1, min(64, int(16 * 600 / max(s.chunk_seconds, 1.0)))))
        await self._drain(self.chunks.compact_minutes, by_machine=True)
        await self._drain(self.chunks.compact_hours, by_machine=False)
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
