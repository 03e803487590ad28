"""StoreWriter.behind: how long the oldest queued write has waited (a store stand-in
that blocks or fails on demand; the writer's thread and event loop are real)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from centrality_core.errors import StoreError
from control_plane.writer import StoreWriter


class SlowStore:
    def __init__(self) -> None:
        self.go = threading.Event()
        self.fail = False

    def write(self, batch) -> None:
        self.go.wait(10)
        if self.fail:
            raise StoreError("database is locked")


def test_behind_grows_only_while_a_flush_is_slow_and_survives_a_failed_flush():
    async def main():
        store = SlowStore()
        w = StoreWriter(store)
        assert w.behind == 0.0
        w.save_heartbeat("m1", 1.0)
        store.go.set()
        await w.flush()               # a quick flush: nothing queued, nothing behind
        assert w.behind == 0.0
        await asyncio.sleep(0.3)
        await w.flush()               # nothing to write: still a fresh start for what comes next
        w.save_heartbeat("m1", 1.5)
        assert w.behind < 0.1
        await w.flush()
        store.go.clear()
        w.save_heartbeat("m1", 2.0)
        slow = asyncio.ensure_future(w.flush())
        await asyncio.sleep(0.05)     # the flush has taken m1 and waits on the store
        w.save_heartbeat("m2", 2.0)   # queued behind it
        await asyncio.sleep(0.3)
        assert 0.3 <= w.behind < 2.0
        store.fail = True
        store.go.set()
        with pytest.raises(StoreError):
            await slow                # kept for the retry: still as far behind as before
        assert w.behind >= 0.35 and w.backlog == 2
        store.fail = False
        await w.flush()
        assert w.behind == 0.0 and w.backlog == 0
        w.close()

    asyncio.run(main())
