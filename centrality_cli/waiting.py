"""``centrality wait``: until N machines are live, retrying a control plane that is not up yet.

CI starts the control plane and the agents together and waits: a control
plane still starting (connection refused, busy) is retried with backoff until
``--timeout``, counted from when ``wait`` started. Keys refused or a host key
mismatch are not retried: waiting cannot fix them.
"""

from __future__ import annotations

import asyncio
import time

from centrality_core import durations
from centrality_core.errors import Busy, ConnectError, WaitTimeout


async def wait_live(context: str | None, live: int, timeout_text: str) -> dict:
    """The control plane's ``wait`` answer (``timed_out`` true and an ``exit_code`` of 124 on timeout)."""
    from centrality_core.client import OperatorClient

    timeout = durations.parse(timeout_text)
    start = time.monotonic()
    deadline = start + timeout
    delay = 0.1
    while True:
        try:
            async with OperatorClient(context, share=True) as client:
                remaining = max(0.0, deadline - time.monotonic())
                reply = await client.wait(live, f"{remaining:.3f}s")
            answer = dict(reply.data)
            answer["waited_s"] = round(time.monotonic() - start, 3)
            if answer.get("timed_out") and ": " in answer.get("reason", ""):  # the whole --timeout, not what was left
                answer["reason"] = f"timed out after {timeout:g}s: " + answer["reason"].split(": ", 1)[1]
            return answer
        except ConnectError as exc:
            if type(exc) not in (ConnectError, Busy):  # refused key, host key mismatch: final
                raise
            if time.monotonic() + delay >= deadline:
                error = WaitTimeout(f"timed out after {timeout:g}s: the control plane never answered "
                                    f"({exc.reason})")
                return {"live": 0, "wanted": live, "waited_s": round(time.monotonic() - start, 3),
                        "machines": [], "timed_out": True, "error": error.code, "reason": error.reason,
                        "exit_code": error.exit_code}
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
