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


def test_a_write_failing_for_another_reason_than_the_store_is_kept_and_the_writer_goes_on(tmp_path, caplog):
    """Not a StoreError (a bug in a write): the batch is kept, its acks wait, the error is
    logged once with its traceback and shown; the run loop goes on and stores it later."""
    from control_plane.store import Store

    class Flaky(Store):
        failures = 2

        def write(self, batch):
            if self.failures:
                self.failures -= 1
                raise ValueError("stats of shape (3, 2) for 3 keys")
            super().write(batch)

    async def main():
        store = Flaky(f"sqlite:///{tmp_path / 'store.db'}")
        store.migrate()
        w = StoreWriter(store, interval=0.01)
        acked = []
        w.add_event({"ts": 1.0, "kind": "registered", "machine_id": "id1", "machine_name": "m1",
                     "from_state": None, "to_state": "live", "reason": "", "actor": "system"})
        w.after_flush(lambda: acked.append(1))
        with pytest.raises(StoreError, match="internal: ValueError"):
            await w.flush()
        assert w.backlog == 2 and not acked and "ValueError" in w.last_error
        runner = asyncio.ensure_future(w.run())
        deadline = time.monotonic() + 10
        while w.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        runner.cancel()
        assert acked == [1] and w.backlog == 0 and w.last_error is None
        assert [e["machine_name"] for e in store.events(limit=5)] == ["m1"]
        w.close()
        store.close()

    asyncio.run(main())
    logged = [r for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info
