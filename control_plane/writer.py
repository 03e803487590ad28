"""The store writer: batches every write of the lifecycle and applies it off the loop.

Writes are queued in memory (``WriteBatch`` coalesces repeated upserts of one
machine) and flushed by one thread every ``interval`` seconds. A failed flush is
kept and retried with backoff, merged with whatever arrived meanwhile, so a
slow or briefly absent database never blocks or disconnects agents and loses
nothing that is still in memory. A write that fails for another reason than the
database (a bug) is kept and retried the same way, logged with its traceback
once and shown as the writer's last error: the writer never stops, and what it
holds is never dropped (agents are acknowledged only once it is stored).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from centrality_core.errors import StoreError

from .store import Store
from .store.db import WriteBatch

log = logging.getLogger("centrality.writer")


class StoreWriter:
    def __init__(self, store: Store, interval: float = 0.1) -> None:
        self.store = store
        self.interval = interval
        self.pending = WriteBatch()
        self.last_error: str | None = None
        self.flushes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="centrality-store-writer")
        self._lock = asyncio.Lock()
        self._taken = time.monotonic()  # when the last flush took what was pending

    # The lifecycle calls these from the event loop; they never block.
    def upsert_machine(self, row: dict) -> None:
        self.pending.upsert(row)

    def save_heartbeat(self, machine_id: str, ts: float) -> None:
        """Only the last-heartbeat time of a machine (no full row)."""
        self.pending.heartbeats[machine_id] = ts

    def delete_machine(self, machine_id: str) -> None:
        self.pending.delete(machine_id)

    def add_event(self, row: dict) -> None:
        self.pending.events.append(row)

    def add_metric_batch(self, row: dict | None, cursor: dict) -> None:
        """Store a batch (``row``; None to only advance the cursor) and its cursor.

        The row carries its cursor (stream, seq) so that the store can skip a
        batch it already holds: one another control plane stored but whose
        acknowledgement never reached the agent, replayed to us after a failover.
        """
        if row is not None:
            row["stream"], row["seq"] = cursor["stream"], cursor["seq"]
            self.pending.metric_batches.append(row)
        self.pending.cursors[cursor["machine_id"]] = cursor

    def put_audit(self, row: dict) -> None:
        """Insert or update one exec audit record (coalesced by its id)."""
        self.pending.audits[row["id"]] = row

    def add_rollups(self, rows: list[dict]) -> None:
        self.pending.rollups.extend(rows)

    def after_flush(self, callback) -> None:
        """Call ``callback()`` once what is pending now is stored."""
        self.pending.callbacks.append(callback)

    async def call(self, fn, *args, **kwargs):
        """Run another store write on the writer's thread: SQLite takes one writer at a
        time, and a burst of enrolments in other threads would wait on its lock."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args, **kwargs))

    @property
    def backlog(self) -> int:
        return len(self.pending)

    @property
    def behind(self) -> float:
        """How long the oldest write still queued has waited, in seconds (0: none queued).

        About: at fleet scale writes arrive all the time, so the queued ones began
        arriving when the last flush took its batch. Unlike ``backlog`` it does not
        jump with a burst that one flush stores (every machine's heartbeat time, the
        minutes closing together): it grows only while flushes fall behind.
        """
        return time.monotonic() - self._taken if len(self.pending) else 0.0

    async def flush(self) -> None:
        """Write what is pending now. Raises StoreError (the batch is kept)."""
        async with self._lock:
            batch, self.pending = self.pending, WriteBatch()
            taken, self._taken = self._taken, time.monotonic()  # what comes next arrives after it
            if not len(batch):
                return
            try:
                try:
                    await asyncio.get_running_loop().run_in_executor(self._executor, self.store.write, batch)
                except StoreError:
                    raise
                except Exception as exc:  # a bug, not the database: kept and retried all the same
                    if self.last_error != f"internal: {exc!r}"[:300]:
                        log.exception("store write failed unexpectedly (the writes are kept and retried)")
                    raise StoreError(f"internal: {exc!r}"[:300]) from exc
            except StoreError as exc:
                batch.merge(self.pending)
                self.pending, self._taken = batch, taken
                self.last_error = exc.reason
                raise
            self.last_error = None
            self.flushes += 1
        for callback in batch.callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - e.g. an ack to an agent that just left
                log.debug("after-flush callback failed", exc_info=True)

    async def run(self) -> None:
        """Flush forever, backing off while the store fails."""
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
                delay = self.interval
            except StoreError as exc:
                delay = min(max(delay * 2, 0.5), 10.0)
                log.warning("store write failed (%d writes kept, retry in %.1fs): %s",
                            self.backlog, delay, exc.reason)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
