"""File copies over the agents' channels: push one upload to many machines, gather one file from each.

**Push** (``PushRun``): the operator's upload comes in on its channel (an
``Inbox``, which stops reading the channel while it holds more than
``INBOX_LIMIT`` bytes, so the SSH window pushes back on the CLI). Each file
goes to every machine still in the run at once: one ``file_put``, then the
same ``file_chunk`` frames, encoded once and written to every agent's
channel. A machine may be at most its *window* ahead of its last
``file_ack``; the next chunk is read only when every machine has room. The
window and chunk shrink with the number of machines so that all that is in
flight stays under ``COPY_BUDGET`` (64 MiB of data, whatever the fleet size):
the control plane's memory is bounded by that, not by the file. A machine
that makes no progress for ``STALL_TIMEOUT`` is dropped (``timeout``) rather
than holding the others. Heartbeats flow the other way on the agents'
channels and are never queued behind a copy.

**Gather** (``GatherRun``): at most ``fanout`` machines send at once; each
sends ``GET_WINDOW`` ahead of this run's acks, and the run acknowledges a
chunk only once the operator's channel has taken it, so a slow operator slows
the agents instead of filling memory.

Per machine a copy ends ``ok``, ``failed`` (the agent refused or could not
write; its reason), ``timeout``, ``cancelled`` or ``unreachable``; the codes
and the worst-of exit status are those of ``exec`` (``fanout.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from centrality_core import protocol as p
from centrality_core.aio import within

log = logging.getLogger("centrality.copy")

#: Data in flight to agents at most, over every machine of a push.
COPY_BUDGET = 64 * 1024 * 1024
#: Smallest chunk (and window) per machine, however many machines.
MIN_CHUNK = 16 * 1024
#: Largest window per machine.
MAX_WINDOW = 2 * 1024 * 1024
#: Seconds a machine may go without acknowledging anything before it is dropped.
STALL_TIMEOUT = 30.0
#: Bytes of the operator's upload buffered here before its channel is paused.
INBOX_LIMIT = 1024 * 1024
#: Gathered output is acknowledged while the operator's channel holds less than this.
ACK_BELOW = 1024 * 1024
PROGRESS_EVERY = 0.5
CODES = {"ok": 0, "failed": 1, "timeout": 124, "cancelled": 130, "unreachable": 255}


def window_for(machines: int) -> tuple[int, int]:
    """(chunk, window) per machine for a push to ``machines`` machines."""
    share = COPY_BUDGET // max(machines, 1)
    window = max(MIN_CHUNK, min(MAX_WINDOW, share))
    chunk = max(MIN_CHUNK, min(p.FILE_CHUNK, window // 2))
    return chunk, max(window, chunk)


@dataclass
class Copy:
    """One machine's part of a copy."""

    name: str
    status: str = "pending"  # pending | running | ok | failed | timeout | cancelled | unreachable
    error: str | None = None
    code_name: str = ""  # the agent's refusal code (traversal, symlink, ...)
    files: int = 0
    bytes: int = 0  # acknowledged, over all files
    sha256: str = ""
    size: int = 0
    acked: int = 0   # of the current file
    sent: int = 0
    busy: bool = False  # the current file is not done yet
    last_progress: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.status not in ("pending", "running")

    @property
    def code(self) -> int:
        return CODES.get(self.status, 1)

    def json(self) -> dict:
        out = {"machine": self.name, "status": self.status, "code": self.code, "files": self.files,
               "bytes": self.bytes, "error": self.error}
        if self.code_name:
            out["refusal"] = self.code_name
        if self.sha256:
            out["sha256"] = self.sha256
        return out


def safe(emit: Callable[[dict], None]) -> Callable[[dict], None]:
    """``emit`` that ignores an operator channel already gone (the run still ends cleanly)."""

    def write(line: dict) -> None:
        try:
            emit(line)
        except Exception:  # noqa: BLE001
            log.debug("cannot write to the operator", exc_info=True)

    return write


def worst(copies) -> int:
    return max((c.code for c in copies), default=1)


class Inbox:
    """The operator's upload: bytes from its channel, read back with ``readexactly``/``readline``."""

    def __init__(self, chan) -> None:
        self.chan = chan
        self.buf = bytearray()
        self.closed = False
        self._more = asyncio.Event()
        self.paused = False

    # the OperatorSession's sink interface
    def input(self, data: bytes) -> None:
        self.buf += data
        self._more.set()
        if len(self.buf) > INBOX_LIMIT and not self.paused:
            self.paused = True
            self.chan.pause_reading()

    def eof(self) -> None:
        self.closed = True
        self._more.set()

    def resize(self, cols: int, rows: int) -> None:
        pass

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n and not self.closed:
            if self.paused:
                self.paused = False
                self.chan.resume_reading()
            self._more.clear()
            await self._more.wait()

    async def readline(self, limit: int = 65536) -> bytes:
        while b"\n" not in self.buf and not self.closed and len(self.buf) <= limit:
            await self._fill(len(self.buf) + 1)
        i = self.buf.find(b"\n")
        if i < 0:
            line, self.buf = bytes(self.buf), bytearray()
            return line
        line = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        return line

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at EOF)."""
        await self._fill(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        if self.paused and len(self.buf) < INBOX_LIMIT:
            self.paused = False
            self.chan.resume_reading()
        return data


class PushRun:
    """One push: files one after another, each to every machine still in the run."""

    def __init__(self, *, id: str, sessions: dict, emit: Callable[[dict], None]) -> None:
        self.id = id
        self.sessions = sessions  # name -> AgentSession
        self.emit = safe(emit)
        self.copies = {n: Copy(n) for n in sessions}
        self.chunk, self.window = window_for(len(sessions))
        self._wake = asyncio.Event()
        self._last_progress = 0.0

    def _active(self) -> list[Copy]:
        return [c for c in self.copies.values() if not c.finished]

    async def put(self, put: p.FilePut, read: Callable[[int], object]) -> None:
        """Send one file (``put.size`` bytes from ``read``) to every machine still in the run."""
        for c in self._active():
            c.status, c.busy, c.acked, c.sent, c.last_progress = "running", True, 0, 0, time.monotonic()
            self._send(c, p.encode(put))
        offset = 0
        while offset < put.size:
            data = await read(min(self.chunk, put.size - offset))
            if not data:
                raise EOFError(f"the upload ended {put.size - offset} bytes early")
            await self._room(len(data))
            frame = p.encode(p.FileChunk(id=self.id, offset=offset, data=data))
            for c in self._active():
                if c.busy:
                    self._send(c, frame)
                    c.sent = offset + len(data)
            offset += len(data)
        await self._until(lambda: all(not c.busy for c in self._active()))
        self._progress(force=True)

    def _send(self, c: Copy, frame: bytes) -> None:
        try:
            self.sessions[c.name].send_bytes(frame)
        except Exception:  # noqa: BLE001 - its channel is closing: the lifecycle listener reports it
            self._end(c, "unreachable", "disconnected")

    async def _room(self, n: int) -> None:
        await self._until(lambda: all(c.sent + n - c.acked <= self.window or not c.busy
                                      for c in self._active()))

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._wake.clear()
            try:
                await within(self._wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._stalled()
            self._progress()

    def _stalled(self) -> None:
        now = time.monotonic()
        for c in self._active():
            if c.busy and now - c.last_progress > STALL_TIMEOUT:
                self._cancel_on(c)
                self._end(c, "timeout", f"no progress for {STALL_TIMEOUT:g}s")

    def on_message(self, name: str, msg: p.Message) -> None:
        c = self.copies.get(name)
        if c is None or c.finished:
            return
        if isinstance(msg, p.FileAck):
            if msg.offset > c.acked:
                c.bytes += min(msg.offset, c.sent) - c.acked
                c.acked = min(msg.offset, c.sent)
            c.last_progress = time.monotonic()
        elif isinstance(msg, p.FileDone):
            c.busy = False
            if msg.error:
                self._end(c, "failed", msg.error, code=msg.code)
            else:
                c.files += 1
                c.sha256 = msg.sha256
        elif isinstance(msg, p.Unsupported):
            self._end(c, "failed", "the agent does not support file copies")
        self._wake.set()

    def _end(self, c: Copy, status: str, error: str | None = None, *, code: str = "") -> None:
        if c.finished:
            return
        c.status, c.error, c.code_name, c.busy = status, error, code, False
        self.emit({"type": "done", **c.json()})
        self._wake.set()

    def finish(self) -> None:
        """Every file went: the machines still in the run are done."""
        for c in self._active():
            self._end(c, "ok")

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        self.emit({"type": "progress", "machines": {c.name: c.bytes for c in self.copies.values()}})

    def on_lost(self, name: str) -> None:
        c = self.copies.get(name)
        if c is not None and not c.finished:
            self._end(c, "unreachable", "disconnected during the copy")

    def _cancel_on(self, c: Copy) -> None:
        try:
            self.sessions[c.name].send(p.Cancel(id=self.id))
        except Exception:  # noqa: BLE001 - a closing channel: the agent drops the transfer anyway
            pass

    def cancel(self, why: str = "cancelled by the operator") -> None:
        for c in self._active():
            if c.busy:
                self._cancel_on(c)
            self._end(c, "cancelled", why)


class GatherRun:
    """One gather: ``file_get`` to at most ``fanout`` machines at once, data relayed as it comes."""

    def __init__(self, *, id: str, sessions: dict, get: p.FileGet, fanout: int,
                 emit: Callable[[dict], None], backlog: Callable[[], int]) -> None:
        self.id = id
        self.sessions = sessions
        self.get = get
        self.fanout = max(1, fanout)
        self.emit = safe(emit)
        self.backlog = backlog
        self.copies = {n: Copy(n) for n in sessions}
        self._queue = list(sessions)
        self._done = asyncio.Event()
        self._pending_acks: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        self._launch()
        while not self._done.is_set():
            try:
                await within(self._done.wait(), 1.0)
            except asyncio.TimeoutError:
                now = time.monotonic()
                for c in list(self.copies.values()):
                    if c.status == "running" and now - c.last_progress > STALL_TIMEOUT:
                        self._cancel_on(c)
                        self._end(c, "timeout", f"no progress for {STALL_TIMEOUT:g}s")

    def _launch(self) -> None:
        running = sum(c.status == "running" for c in self.copies.values())
        while self._queue and running < self.fanout:
            c = self.copies[self._queue.pop(0)]
            c.status, c.last_progress = "running", time.monotonic()
            try:
                self.sessions[c.name].send(self.get)
            except Exception:  # noqa: BLE001
                self._end(c, "unreachable", "disconnected")
                continue
            running += 1
        if not self._queue and all(c.finished for c in self.copies.values()):
            self._done.set()

    def on_message(self, name: str, msg: p.Message) -> None:
        c = self.copies.get(name)
        if c is None or c.status != "running":
            return
        c.last_progress = time.monotonic()
        if isinstance(msg, p.FileAck):  # the agent's first: the file's size
            c.size = msg.size or 0
            self.emit({"type": "begin", "machine": name, "size": c.size})
        elif isinstance(msg, p.FileChunk):
            if msg.offset != c.bytes or c.bytes + len(msg.data) > self.get.max_bytes:
                self._cancel_on(c)
                return self._end(c, "failed", "the agent sent data out of order or past the size limit")
            self.emit({"type": "data", "machine": name, "offset": msg.offset, "data": msg.data})
            c.bytes += len(msg.data)
            self._pending_acks[name] = c.bytes
            self._ack()
        elif isinstance(msg, p.FileDone):
            if msg.error:
                self._end(c, "failed", msg.error, code=msg.code)
            elif msg.size != c.bytes:
                self._end(c, "failed", f"the agent reported {msg.size} bytes but sent {c.bytes}")
            else:
                c.files, c.sha256, c.size = 1, msg.sha256, msg.size
                self._end(c, "ok", mode=msg.mode)
        elif isinstance(msg, p.Unsupported):
            self._end(c, "failed", "the agent does not support file copies")

    def _ack(self) -> None:
        if self._timer is not None or not self._pending_acks:
            return
        if self.backlog() < ACK_BELOW:
            for name, offset in self._pending_acks.items():
                if not self.copies[name].finished:
                    self.sessions[name].send(p.FileAck(id=self.id, offset=offset))
            self._pending_acks.clear()
        else:
            self._timer = asyncio.get_running_loop().call_later(0.02, self._ack_later)

    def _ack_later(self) -> None:
        self._timer = None
        self._ack()

    def _end(self, c: Copy, status: str, error: str | None = None, *, code: str = "", mode: int = 0) -> None:
        if c.finished:
            return
        c.status, c.error, c.code_name = status, error, code
        self._pending_acks.pop(c.name, None)
        line = {"type": "done", **c.json()}
        if mode:
            line["mode"] = mode
        self.emit(line)
        self._launch()

    def on_lost(self, name: str) -> None:
        c = self.copies.get(name)
        if c is not None and c.status == "running":
            self._end(c, "unreachable", "disconnected during the copy")

    def _cancel_on(self, c: Copy) -> None:
        try:
            self.sessions[c.name].send(p.Cancel(id=self.id))
        except Exception:  # noqa: BLE001
            pass

    def cancel(self, why: str = "cancelled by the operator") -> None:
        self._queue.clear()
        for c in self.copies.values():
            if c.status == "running":
                self._cancel_on(c)
            if not c.finished:
                self._end(c, "cancelled", why)
        if self._timer is not None:
            self._timer.cancel()
        self._done.set()
