"""Routes what agents send about a run (exec output and exits, shell output, file
chunks and acks) to the run that asked, by the run's id; and tells every run
when a machine it waits on leaves ``live``.

A run is anything with an ``id``, ``on_message(name, msg)``, ``on_lost(name)``
and ``cancel(why)``: an exec fan-out (``fanout.ExecRun``), a shell relay
(``shell.ShellRelay``), a copy (``copy.PushRun``, ``copy.GatherRun``).
"""

from __future__ import annotations

from typing import Protocol

from centrality_core import protocol as p
from centrality_core.lifecycle import Event, Liveness


class Run(Protocol):
    id: str

    def on_message(self, name: str, msg: p.Message) -> None: ...

    def on_lost(self, name: str) -> None: ...

    def cancel(self, why: str = ...) -> None: ...


class CommandRouter:
    """Routes agents' ``output``/``exit`` messages to the run that sent the command."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def add(self, run: Run) -> None:
        self.runs[run.id] = run

    def remove(self, run: Run) -> None:
        self.runs.pop(run.id, None)

    def message(self, name: str, msg: p.Message) -> None:
        run = self.runs.get(getattr(msg, "id", ""))
        if run is not None:
            run.on_message(name, msg)

    def on_lifecycle(self, events: list[Event]) -> None:
        """Registry listener: a machine that left ``live`` cannot finish its commands."""
        if not self.runs:
            return
        for ev in events:
            if ev.from_state is Liveness.LIVE and ev.to_state is not Liveness.LIVE:
                for run in list(self.runs.values()):
                    run.on_lost(ev.name)

    def cancel_all(self, why: str) -> None:
        for run in list(self.runs.values()):
            run.cancel(why)
