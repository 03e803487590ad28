"""The fan-out of one ``exec`` over the agents' channels.

An ``ExecRun`` sends one ``command`` message to each target's agent session
(at most ``fanout`` at once; ``session_of`` finds a machine's session),
collects their ``output`` and ``exit`` messages (routed here by
``router.CommandRouter``), and reports everything through an ``emit``
callback as it happens. No new SSH connection or channel is opened: the
agents' channels are already there.

Per machine, a command ends as one of:

| status | meaning | code (worst-of exit) |
| --- | --- | --- |
| ``ok`` | exit status 0 | 0 |
| ``failed`` | exit status N != 0 (127: not found, 126: cannot run) | N |
| ``killed`` | ended by signal S (not ours) | 128 + S |
| ``timeout`` | the agent killed it at ``timeout``, or never answered | 124 |
| ``cancelled`` | the operator went away (Ctrl-C); the agent killed it | 130 |
| ``unreachable`` | not connected, or disconnected while it ran | 255 |

The run's exit code is the largest code. Everything from an agent is
untrusted: output is counted against ``max_output`` per machine here too
(whatever the agent claims), and a run never waits on a silent agent past its
timeout plus ``ANSWER_GRACE``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from centrality_core import protocol as p
from centrality_core.documents import ExecExit, ExecOutput

log = logging.getLogger("centrality.exec")

#: Seconds past its timeout that a command may take to report its end (SIGTERM grace, latency).
ANSWER_GRACE = 10.0
#: Bytes queued to the operator before more output is dropped (and reported truncated).
OPERATOR_BACKLOG_LIMIT = 16 * 1024 * 1024

CODES = {"timeout": 124, "cancelled": 130, "unreachable": 255}


@dataclass
class MachineResult:
    name: str
    status: str = "pending"  # pending | running | ok | failed | killed | timeout | cancelled | unreachable
    exit_code: int | None = None
    signal: int | None = None
    duration: float | None = None
    truncated: bool = False
    error: str | None = None
    started: float = 0.0  # monotonic
    output_bytes: int = 0

    @property
    def finished(self) -> bool:
        return self.status not in ("pending", "running")

    @property
    def code(self) -> int:
        if self.status == "ok":
            return 0
        if self.status == "failed":
            return self.exit_code if self.exit_code else 1
        if self.status == "killed":
            return 128 + (self.signal or 0)
        return CODES.get(self.status, 1)

    def json(self) -> dict:
        return {"machine": self.name, "status": self.status, "exit_code": self.exit_code,
                "signal": self.signal, "code": self.code,
                "duration": round(self.duration, 3) if self.duration is not None else None,
                "truncated": self.truncated, "error": self.error}


def worst(results: list[MachineResult]) -> int:
    """The run's exit code: 0 if every machine succeeded, else the largest code."""
    return max((r.code for r in results), default=1)


def classify(msg: p.CommandExit) -> str:
    if msg.timed_out:
        return "timeout"
    if msg.error == "cancelled":
        return "cancelled"
    if msg.exit_code == 0 and not msg.error:
        return "ok"
    if msg.exit_code is None and msg.signal:
        return "killed"
    return "failed"


class ExecRun:
    def __init__(self, session_of: Callable[[str], Any], *, id: str, argv: list[str], names: list[str],
                 timeout: float, fanout: int, max_output: int, emit: Callable[[ExecExit | ExecOutput], None],
                 backlog: Callable[[], int] = lambda: 0) -> None:
        #: The agent session of a machine, or None (``Registry.session``).
        self.session_of = session_of
        self.id = id
        self.argv = argv
        self.timeout = timeout
        self.fanout = fanout if fanout > 0 else len(names) or 1
        self.max_output = max_output
        self.emit = emit
        self.backlog = backlog
        self.results = {n: MachineResult(n) for n in names}
        self._queue = deque(names)
        self._running: dict[str, asyncio.TimerHandle] = {}
        self._done = asyncio.Event()
        self._command = p.Command(id=id, argv=argv, timeout=timeout, max_output_bytes=max_output)

    # ------------------------------------------------------------------ driving

    async def run(self) -> dict[str, MachineResult]:
        self._launch()
        await self._done.wait()
        return self.results

    def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and len(self._running) < self.fanout:
            name = self._queue.popleft()
            r = self.results[name]
            session = self.session_of(name)
            if session is None or getattr(session, "closed", False):
                self._finish(r, "unreachable", error="not connected")
                continue
            r.status, r.started = "running", time.monotonic()
            self._running[name] = loop.call_later(self.timeout + ANSWER_GRACE, self._overdue, name)
            session.send(self._command)
        if not self._running and not self._queue:
            self._done.set()

    def _finish(self, r: MachineResult, status: str, **fields) -> None:
        r.status = status
        for k, v in fields.items():
            setattr(r, k, v)
        if r.duration is None and r.started:
            r.duration = time.monotonic() - r.started
        timer = self._running.pop(r.name, None)
        if timer is not None:
            timer.cancel()
        self._emit(ExecExit(**r.json()))

    def _emit(self, line: ExecExit | ExecOutput) -> None:
        try:
            self.emit(line)
        except Exception:  # noqa: BLE001 - the operator's channel is gone; the run still ends cleanly
            log.debug("cannot write to the operator", exc_info=True)

    def _ended(self, r: MachineResult, status: str, **fields) -> None:
        """A running machine is done: record it, start the next one."""
        self._finish(r, status, **fields)
        self._launch()

    # ------------------------------------------------------------------ from agents

    def on_message(self, name: str, msg: p.Message) -> None:
        r = self.results.get(name)
        if r is None or r.status != "running":
            return  # not ours, or late (after a timeout or cancel)
        if isinstance(msg, p.CommandOutput):
            self._output(r, msg)
        elif isinstance(msg, p.CommandExit):
            self._ended(r, classify(msg), exit_code=msg.exit_code, signal=msg.signal,
                        duration=msg.duration, truncated=r.truncated or msg.truncated, error=msg.error)

    def _output(self, r: MachineResult, msg: p.CommandOutput) -> None:
        data = msg.data
        size = len(data.encode("utf-8", "surrogatepass"))
        room = self.max_output - r.output_bytes
        if room <= 0:
            r.truncated = True
            return
        if size > room:
            data = data.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
            size = room
            r.truncated = True
        if self.backlog() > OPERATOR_BACKLOG_LIMIT:
            r.truncated = True  # the operator reads too slowly: drop rather than buffer without bound
            return
        r.output_bytes += size
        self._emit(ExecOutput(machine=r.name, stream=msg.stream, data=data))

    def on_lost(self, name: str) -> None:
        r = self.results.get(name)
        if r is not None and r.status == "running":
            self._ended(r, "unreachable", error="disconnected while running")

    def _overdue(self, name: str) -> None:
        r = self.results.get(name)
        if r is None or r.status != "running":
            return
        self._send_cancel(name)
        self._ended(r, "timeout", error=f"no answer from the agent within {self.timeout + ANSWER_GRACE:g}s")

    # ------------------------------------------------------------------ cancel

    def _send_cancel(self, name: str) -> None:
        session = self.session_of(name)
        if session is not None:
            try:
                session.send(p.Cancel(id=self.id))
            except Exception:  # noqa: BLE001 - a closing channel; the agent kills it on disconnect anyway
                log.debug("cancel to %s failed", name, exc_info=True)

    def cancel(self, why: str = "cancelled by the operator") -> None:
        """Stop everywhere: cancel what runs, never start what waits."""
        self._queue.clear()
        for name in list(self._running):
            self._send_cancel(name)
            self._finish(self.results[name], "cancelled", error=why)
        for r in self.results.values():
            if r.status == "pending":
                r.status, r.error = "cancelled", "not started"
        self._done.set()
