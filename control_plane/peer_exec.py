"""The part of a fleet-wide ``exec`` that another replica runs.

The replica an operator asked resolves the targets (names, labels, drained
and limbo rules, the confirmation threshold) once, for the whole fleet. The
machines its peers hold are then run by those peers: a ``PeerRun`` per peer
makes one ``exec`` request on the peer link (``peering.Peers``) naming its
machines explicitly, with the operator's options (timeout, output bound, a
share of the fan-out), and turns what comes back into the ``ExecOutput`` and
``ExecExit`` documents of the one stream the operator reads. The peer
answers from its own agents only (``Ctx.from_peer``) and writes no audit row:
the replica asked writes the one row, with the operator as actor.

A peer that cannot be reached, dies mid-run or goes silent past the run's
deadline ends each of its machines that had not answered with an error
(``unreachable``, or ``timeout`` for silence), never a hang; ``failure``
says why, for the summary. Cancelling the ``run`` task (the operator went
away) closes the channel: the peer cancels the command on its machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, Callable, Iterable

from centrality_core.aio import within
from centrality_core.documents import ExecExit, ExecOutput, ExecStart, ExecSummary
from centrality_core.errors import CentralityError

from .fanout import ANSWER_GRACE, OPERATOR_BACKLOG_LIMIT, MachineResult
from .peering import Peers

log = logging.getLogger("centrality.exec")

#: Seconds a peer may take past its machines' own deadlines (its fan-out, the link).
PEER_GRACE = 10.0
STATUSES = frozenset({"ok", "failed", "killed", "timeout", "cancelled", "unreachable"})


def split(names: Iterable[str], holder: Callable[[str], str]) -> tuple[list[str], dict[str, list[str]]]:
    """Names run here, and names per peer replica that holds them (``holder``: the
    replica holding a machine, ``""`` for this one or none). Order is kept. Pure."""
    here: list[str] = []
    elsewhere: dict[str, list[str]] = {}
    for name in names:
        replica = holder(name)
        if replica:
            elsewhere.setdefault(replica, []).append(name)
        else:
            here.append(name)
    return here, elsewhere


def shares(fanout: int, sizes: dict[str, int]) -> dict[str, int]:
    """Each part's share of ``fanout`` (machines running at once), in proportion to its
    size, at least 1 each; 0 (all at once) stays 0. Pure."""
    if fanout <= 0:
        return {k: 0 for k in sizes}
    total = sum(sizes.values()) or 1
    return {k: max(1, round(fanout * n / total)) for k, n in sizes.items()}


def deadline(n: int, fanout: int, timeout: float) -> float:
    """Seconds a peer's part of a run may take at most: waves of ``fanout`` machines,
    each bounded by the timeout and the agents' grace, plus the link's grace."""
    waves = math.ceil(n / fanout) if fanout > 0 else 1
    return waves * (timeout + ANSWER_GRACE) + PEER_GRACE


class PeerRun:
    def __init__(self, peers: Peers, replica: str, names: list[str], argv: list[str], *, timeout: float,
                 timeout_text: str, fanout: int, max_output: int, max_output_text: str,
                 emit: Callable[[Any], None], backlog: Callable[[], int] = lambda: 0) -> None:
        self.peers = peers
        self.replica = replica
        self.argv = argv
        self.options = dict(timeout=timeout_text, fanout=fanout, max_output=max_output_text,
                            include_drained=True, yes=True)  # the targets were decided here
        self.deadline = deadline(len(names), fanout, timeout)
        self.max_output = max_output
        self.emit = emit
        self.backlog = backlog
        self.results = {n: MachineResult(n) for n in names}
        #: Why the peer's part did not end normally (for the summary), or "".
        self.failure = ""
        self._not_run: dict[str, str] = {}  # machine -> why the peer did not run it

    async def run(self) -> dict[str, MachineResult]:
        status, why = "unreachable", ""
        try:
            await within(self.peers.call(self.replica, self._stream), self.deadline)
        except asyncio.TimeoutError:
            status, why = "timeout", f"no answer from replica {self.replica} within {self.deadline:g}s"
        except asyncio.CancelledError:
            self._settle("cancelled", "cancelled by the operator", failure=False)
            raise
        except CentralityError as exc:
            why = exc.reason if self.replica in exc.reason else f"replica {self.replica}: {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - whatever broke, each machine still gets its line
            log.exception("exec on replica %s failed", self.replica)
            why = f"replica {self.replica}: {exc}"
        else:
            why = f"replica {self.replica} ended the run without an answer for it"
        self._settle(status, why)
        return self.results

    async def _stream(self, client) -> None:
        names = list(self.results)
        async with contextlib.aclosing(client.exec(names, self.argv, **self.options)) as lines:
            async for doc in lines:
                if isinstance(doc, ExecOutput):
                    self._output(doc)
                elif isinstance(doc, ExecExit):
                    self._exit(doc)
                elif isinstance(doc, ExecStart):
                    for s in doc.skipped:
                        self._not_run[s.machine] = f"{s.reason} on replica {self.replica}"
                    for name in doc.unknown:
                        self._not_run[name] = f"unknown to replica {self.replica}"
                elif isinstance(doc, ExecSummary):
                    return

    def _output(self, doc: ExecOutput) -> None:
        r = self.results.get(doc.machine)
        if r is None or r.finished:
            return
        r.status = "running"
        size = len(doc.data.encode("utf-8", "surrogatepass"))
        if r.output_bytes + size > self.max_output or self.backlog() > OPERATOR_BACKLOG_LIMIT:
            r.truncated = True  # the peer bounds it too; this is the bound the operator was promised
            return
        r.output_bytes += size
        self._emit(doc)

    def _exit(self, doc: ExecExit) -> None:
        r = self.results.get(doc.machine)
        if r is None or r.finished:
            return
        r.status = doc.status if doc.status in STATUSES else "failed"
        r.exit_code, r.signal, r.error = doc.exit_code, doc.signal, doc.error
        r.duration = float(doc.duration) if doc.duration is not None else None
        r.truncated = r.truncated or doc.truncated
        self._emit(ExecExit(**r.json()))

    def _settle(self, status: str, why: str, *, failure: bool = True) -> None:
        """Every machine without an answer ends now, with its line."""
        pending = [r for r in self.results.values() if not r.finished]
        if pending and failure and not all(r.name in self._not_run for r in pending):
            self.failure = why
        for r in pending:
            if failure and r.name in self._not_run and r.status == "pending":
                r.status, r.error = "unreachable", self._not_run[r.name]
            else:
                r.status, r.error = status, why
            self._emit(ExecExit(**r.json()))

    def _emit(self, doc: Any) -> None:
        try:
            self.emit(doc)
        except Exception:  # noqa: BLE001 - the operator's channel is gone; the run still ends cleanly
            log.debug("cannot write to the operator", exc_info=True)
