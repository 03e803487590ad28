"""Process settings for the long-running processes that hold a large heap (the
control plane and the fleet simulator: thousands of connections; the dashboard:
thousands of rows): the event loop and the garbage collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

log = logging.getLogger("centrality.runtime")

#: Allocations between young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def use_uvloop() -> bool:
    """Install uvloop's event loop policy when available (much cheaper per message)."""
    if os.environ.get("CENTRALITY_NO_UVLOOP"):
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def tune_gc() -> None:
    """Collect less often: thousands of connections make a large, long-lived heap.

    Memory is freed by reference counting as usual; the cycle collector only
    finds garbage in reference cycles. With CPython's default threshold it
    runs hundreds of times a second under a stream of short-lived lists (a
    metrics batch holds one per key), and its full collections walk every
    object of every connection: a third of the fleet simulator's CPU at a few thousand agents.
    In the dashboard at 10,000 machines the 10,000 rows decoded every second set off a full
    collection every few seconds, each a 90-110 ms pause that a key pressed meanwhile waits for.
    What exists at start-up (modules, classes) is frozen out of its walks.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
    gc.callbacks.append(_time_collections)


#: A collection that stops the process longer than this is logged.
GC_PAUSE_WARN_S = 0.5
_gc_started = 0.0


def _time_collections(phase: str, info: dict) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    paused = time.perf_counter() - _gc_started
    if paused >= GC_PAUSE_WARN_S:
        log.warning("garbage collection (generation %d) paused the process for %.2fs (%d objects freed)",
                    info["generation"], paused, info["collected"])
