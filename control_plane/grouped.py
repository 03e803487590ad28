"""Group calls that arrive while one is running into the next one (a group commit).

A first join of thousands of machines asks for thousands of enrolments within
seconds; each is a transaction on the store writer's thread. ``Grouped`` hands
whatever queued up while the previous batch ran to one call of ``run_many``,
so a burst costs a few transactions instead of one per caller, and a lone
caller waits for nothing (its batch of one starts at once).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Grouped(Generic[T, R]):
    """``await grouped(item)`` is ``(await run_many([item, ...]))[its index]``."""

    def __init__(self, run_many: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 256) -> None:
        self.run_many = run_many
        self.max_batch = max_batch
        self.batches = 0  # calls of run_many so far (status, tests)
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._running: list[tuple[T, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def __call__(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
            self._task.add_done_callback(self._drained)
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            self._running = batch
            self.batches += 1
            try:
                results = await self.run_many([item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each caller gets the batch's error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    def _drained(self, task: asyncio.Task) -> None:
        """The runner ended. Cancelled (the control plane stopping): nobody waits forever.
        Else a caller may have queued after its last look and before this ran: run on."""
        self._task = None
        if not task.cancelled():
            self._running = []
            if self._queue:
                self._task = asyncio.ensure_future(self._drain())
                self._task.add_done_callback(self._drained)
            return
        left, self._running, self._queue = self._running + self._queue, [], []
        for _, future in left:
            if not future.done():
                future.cancel()
