"""``within``: ``asyncio.wait_for`` that never loses the caller's cancellation.

Before Python 3.12, ``asyncio.wait_for`` returns the awaited result when the
caller is cancelled in the same loop iteration as that result arrives
(python/cpython#86296): the ``CancelledError`` is swallowed. A loop such as
"renew the lease every 0.5 s, each round within its deadline" then never
stops, and whatever awaits it (a shutdown) hangs for ever. ``within`` waits
with ``asyncio.wait``, which raises the caller's cancellation whatever the
awaited work did meanwhile, on every supported Python.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], timeout: float | None) -> T:
    """The result of ``aw``, or ``asyncio.TimeoutError`` (``aw`` cancelled) after
    ``timeout`` seconds (``None``: no limit). Cancelling the caller cancels ``aw``
    and raises ``CancelledError`` in the caller, always."""
    task = asyncio.ensure_future(aw)
    timed_out = False
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            timed_out = True
            task.cancel()
            await asyncio.wait({task})  # it winds down; the caller may still be cancelled here
    except asyncio.CancelledError:
        task.cancel()
        raise
    if timed_out and task.cancelled():
        raise asyncio.TimeoutError()
    return task.result()  # done in time, or finished anyway while being cancelled
