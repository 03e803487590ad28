"""``within``: a deadline on one await that never swallows the caller's cancellation."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from centrality_core.aio import within

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("centrality_core", "control_plane", "agent_runtime", "centrality_cli", "tui", "provision")


async def test_the_result_when_it_comes_in_time():
    assert await within(asyncio.sleep(0.01, result="done"), 5) == "done"
    assert await within(asyncio.sleep(0, result=3), None) == 3


async def test_a_timeout_cancels_the_work_and_raises_timeout_error():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(asyncio.TimeoutError):
        await within(slow(), 0.05)
    assert started.is_set() and cancelled.is_set()


async def test_an_error_of_the_work_is_raised_as_it_is():
    async def broken():
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await within(broken(), 5)


async def test_the_callers_cancellation_arriving_with_the_result_is_not_lost():
    """The case ``asyncio.wait_for`` gets wrong before Python 3.12 (it returns 1):
    the result and the cancellation arrive in the same loop iteration."""
    fut = asyncio.get_running_loop().create_future()
    waiter = asyncio.create_task(within(fut, 10))
    await asyncio.sleep(0)  # the waiter is waiting now
    fut.set_result(1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_periodic_loop_on_it_stops_when_cancelled_whatever_the_timing():
    """Like the replica's lease renewer: a round within a deadline, again and again.
    Cancelled at every phase of a round, it stops each time."""
    async def round_():
        await asyncio.sleep(0)

    survived = []

    async def renewer():
        while not survived:  # a loop that lost its cancel still ends, once the test saw it
            await within(round_(), 1.0)

    for delay in range(6):
        task = asyncio.create_task(renewer())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=1)
        if not task.cancelled():
            survived.append(delay)
    assert survived == [], "the loop survived a cancel after these numbers of loop steps"


async def test_cancelling_the_caller_cancels_the_work():
    cancelled = asyncio.Event()

    async def slow():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiter = asyncio.create_task(within(slow(), 30))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)
    assert cancelled.is_set()


def test_product_code_waits_with_within_not_asyncio_wait_for():
    """A regression guard: each ``asyncio.wait_for`` in a loop is a shutdown that
    can hang for ever on Python 3.10 and 3.11."""
    found = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Attribute) and node.attr == "wait_for"
                        and isinstance(node.value, ast.Name) and node.value.id == "asyncio"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
