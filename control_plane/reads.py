"""Reads of the store from the event loop: a small thread pool, and the metric
history queries that run in it.

The control plane never blocks its loop on the database: a request that reads
the store awaits ``ReadPool.run(fn, ...)``, which runs the blocking call on one
of a few threads. ``MetricReads`` answers a machine's samples over a window
(``history.py`` does the reading; this only puts it off the loop).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from centrality_core.documents import MetricColumns

from . import history
from .store import Store
from .store.chunks import Chunks

#: ``ReadPool.run``: a blocking store call, awaited on a read thread (what parts that use the store
#: from the event loop are given).
StoreCall = Callable[..., Awaitable[Any]]


class ReadPool:
    def __init__(self, threads: int = 4) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="centrality-store-read")

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call on a read thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class MetricReads:
    """A machine's stored samples: raw, 1-minute or 1-hour rollups (chunks and what is
    not compacted yet, as one series)."""

    def __init__(self, store: Store, chunks: Chunks, db: StoreCall) -> None:
        self.store = store
        self.chunks = chunks
        self.db = db

    async def query(self, machine_id: str, since: float, until: float, patterns: list[str] | None,
                    resolution: str) -> list[dict]:
        """Samples as ``[{"ts": ISO, key: value, ...}]``."""
        def rows() -> list[dict]:
            return history.as_dicts(history.query(self.store, self.chunks, machine_id, since, until,
                                                  patterns, resolution))
        return await self.db(rows)

    async def query_rows(self, machine_id: str, since: float, until: float, patterns: list[str] | None,
                         resolution: str) -> list:
        """``query``'s rows as msgspec Structs, for the ``metrics`` request: a GPU node's
        day is ~1 million values, encoded in C without a dict per row."""
        return await self.db(history.query, self.store, self.chunks, machine_id, since, until,
                               patterns, resolution)

    async def query_columns(self, machine_id: str, since: float, until: float, patterns: list[str] | None,
                            resolution: str) -> MetricColumns:
        """``query`` as columns (``metrics --columns``: keys once, values packed)."""
        return await self.db(history.query_columns, self.store, self.chunks, machine_id, since, until,
                             patterns, resolution)
