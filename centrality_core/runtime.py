"""Process settings for the long-running processes that hold a large heap (the
control plane and the fleet simulator: thousands of connections; the dashboard:
thousands of rows): the event loop, the garbage collector and (the control
plane) the C allocator.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
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


#: glibc malloc: blocks up to this size come from the heap rather than a mapping of their own.
MMAP_THRESHOLD = 32 * 2 ** 20
#: glibc malloc: free memory at the top of the heap kept for the next allocations, not given back.
TRIM_THRESHOLD = 64 * 2 ** 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def tune_malloc() -> bool:
    """Keep the control plane's large temporary arrays in the heap (glibc only).

    Compacting a chunk or reading a day of a GPU node's minutes makes a few dozen
    numpy arrays of 1-10 MB each, freed at once. By default glibc gives each its own
    mapping (or trims the heap once they are freed), so the next chunk faults every
    page in again: in ``bench/storage.py`` that was a third of the encode's CPU. With
    blocks up to ``MMAP_THRESHOLD`` from the heap and up to ``TRIM_THRESHOLD`` of free
    memory kept at its top, they are reused. Costs at most that much resident memory
    kept free. Explicit ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    environment settings win (nothing is changed). Returns whether it was applied."""
    if sys.platform != "linux" or any(os.environ.get(v) for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    global _malloc_trim
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if applied:
        _malloc_trim = libc.malloc_trim
        _malloc_trim.argtypes = [ctypes.c_size_t]
    return applied


_malloc_trim = None


def release_free_memory() -> bool:
    """Give the free memory of the heap back to the system, once a burst of large temporaries
    is over (after a history pass): with ``tune_malloc`` glibc keeps up to ``TRIM_THRESHOLD`` of
    it, and free blocks amid the heap (a join's replays) are never trimmed on their own.
    ~30-40 MiB of a 10,000-machine control plane in ``bench/fleet.py``. Does nothing (False)
    unless ``tune_malloc`` was applied."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
