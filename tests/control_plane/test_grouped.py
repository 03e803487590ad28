"""Calls that arrive while one runs are run together next (a group commit)."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.grouped import Grouped


async def test_a_lone_call_runs_at_once_and_a_burst_shares_the_next_batches():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run_many(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()  # the first batch is slow: the others queue behind it
        return [i * 10 for i in items]

    g = Grouped(run_many, max_batch=3)
    first = asyncio.ensure_future(g(0))
    for _ in range(3):
        await asyncio.sleep(0)
    assert batches == [[0]]  # started without waiting for company
    rest = [asyncio.ensure_future(g(i)) for i in range(1, 6)]
    for _ in range(3):
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
    assert batches == [[0], [1, 2, 3], [4, 5]] and g.batches == 3


async def test_every_caller_of_a_failed_batch_gets_its_error_and_the_next_batch_runs():
    calls = 0

    async def run_many(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
            raise RuntimeError("database is locked")
        return items

    g = Grouped(run_many)
    a = asyncio.ensure_future(g("a"))
    await asyncio.sleep(0)
    b, c = asyncio.ensure_future(g("b")), asyncio.ensure_future(g("c"))
    with pytest.raises(RuntimeError):
        await a
    assert await asyncio.gather(b, c) == ["b", "c"]


async def test_stopping_the_runner_cancels_whoever_waits():
    async def run_many(items):
        await asyncio.sleep(3600)

    g = Grouped(run_many)
    waiting = [asyncio.ensure_future(g(i)) for i in range(3)]
    await asyncio.sleep(0)
    g._task.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_a_call_made_as_the_runner_finishes_is_run_not_dropped():
    async def run_many(items):
        return items

    g = Grouped(run_many)
    for i in range(5):  # each call made right after the previous one's batch ended
        assert await g(i) == i
