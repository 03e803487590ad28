"""One interactive session relayed between an operator's channel and an agent's channel.

The operator's bytes (keystrokes, window changes, EOF) become ``shell_input``
/ ``shell_resize`` messages on the agent's existing channel; the agent's
``shell_output`` is written raw to the operator's channel. No connection is
opened to the machine: the relay is a few callbacks on channels that exist.

Flow control: the agent sends at most ``SHELL_WINDOW`` bytes ahead of what
this relay acknowledged (``shell_ack``), and the relay acknowledges output
only once the operator's channel has taken it (its SSH write buffer below
``ACK_BELOW``), so a slow operator slows the shell, never the control plane's
memory. A recording (``ssh_record_bytes`` > 0, off by default) keeps the
first that many bytes of output in a file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from centrality_core import protocol as p

log = logging.getLogger("centrality.shell")

#: Output is acknowledged to the agent while the operator's channel holds less than this unsent.
ACK_BELOW = 64 * 1024
ACK_POLL = 0.02


@dataclass
class ShellResult:
    status: str = "running"  # running | ok | failed | killed | cancelled | unreachable | error
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None

    @property
    def code(self) -> int:
        """The exit status the operator's ``ssh`` ends with (as OpenSSH's client reports it)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal:
            return 128 + self.signal
        return {"cancelled": 130, "unreachable": 255}.get(self.status, 1)


class Recorder:
    """The first ``limit`` bytes of a session's output, in a file."""

    def __init__(self, path: Path, limit: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.limit = limit
        self.size = 0
        self.truncated = False
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data, self.truncated = data[:room], True
        self._f.write(data)
        self.size += len(data)

    def close(self) -> None:
        self._f.close()


class ShellRelay:
    """Routed like an ``ExecRun`` (by id, through ``CommandRouter``)."""

    def __init__(self, *, id: str, name: str, session, out: Callable[[bytes], None],
                 backlog: Callable[[], int], recorder: Recorder | None = None) -> None:
        self.id = id
        self.name = name
        self.session = session  # the agent's AgentSession
        self.out = out
        self.backlog = backlog
        self.recorder = recorder
        self.result = ShellResult()
        self.started = time.time()
        self._done = asyncio.Event()
        self._unacked = 0
        self._ack_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ operator -> agent

    def open(self, msg: p.ShellOpen) -> None:
        self.session.send(msg)

    def input(self, data: bytes) -> None:
        for i in range(0, len(data), p.SHELL_CHUNK):
            self.session.send(p.ShellInput(id=self.id, data=data[i:i + p.SHELL_CHUNK]))

    def eof(self) -> None:
        self.session.send(p.ShellInput(id=self.id, eof=True))

    def resize(self, cols: int, rows: int) -> None:
        self.session.send(p.ShellResize(id=self.id, cols=max(0, min(cols, 10000)),
                                        rows=max(0, min(rows, 10000))))

    # ------------------------------------------------------------------ agent -> operator

    def on_message(self, name: str, msg: p.Message) -> None:
        if name != self.name or self._done.is_set():
            return  # another machine cannot speak for this session
        if isinstance(msg, p.ShellOutput):
            try:
                self.out(msg.data)
            except Exception:  # noqa: BLE001 - the operator's channel is closing
                return
            if self.recorder is not None:
                self.recorder.write(msg.data)
            self._unacked += len(msg.data)
            self._ack()
        elif isinstance(msg, p.ShellExit):
            r = self.result
            if msg.error:
                r.status, r.error = "error", msg.error
            elif msg.signal:
                r.status, r.signal = "killed", msg.signal
            else:
                r.status, r.exit_code = ("ok" if msg.exit_code == 0 else "failed"), msg.exit_code
            self._end()
        elif isinstance(msg, p.Unsupported):
            self.result.status, self.result.error = "error", "the agent does not support shell sessions"
            self._end()

    def _ack(self) -> None:
        """Acknowledge what the operator's channel took; if it is full, look again shortly."""
        if self._ack_timer is not None or not self._unacked or self._done.is_set():
            return
        if self.backlog() < ACK_BELOW:
            consumed, self._unacked = self._unacked, 0
            self.session.send(p.ShellAck(id=self.id, consumed=consumed))
        else:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_POLL, self._ack_later)

    def _ack_later(self) -> None:
        self._ack_timer = None
        self._ack()

    def on_lost(self, name: str) -> None:
        if name == self.name and not self._done.is_set():
            self.result.status, self.result.error = "unreachable", f"{name} disconnected"
            self._end()

    def cancel(self, why: str = "the operator went away") -> None:
        if not self._done.is_set():
            try:
                self.session.send(p.Cancel(id=self.id))
            except Exception:  # noqa: BLE001 - a closing agent channel: the agent hangs up anyway
                pass
            self.result.status, self.result.error = "cancelled", why
            self._end()

    def _end(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        if self.recorder is not None:
            self.recorder.close()
        self._done.set()

    async def wait(self) -> ShellResult:
        await self._done.wait()
        return self.result
