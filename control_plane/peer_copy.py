"""The part of a ``cp`` that another replica runs: its machines, through its own agents.

The replica an operator asked resolves the targets once, for the whole
fleet; the machines a peer holds are copied by that peer. A ``PeerCopy`` per
peer makes one ``cp put`` / ``cp get`` request on the peer link
(``peering.Peers``), naming its machines, with the operator's options.

* put: the upload is passed on as it is read (each header line, then each
  chunk, to every peer part beside the local ``PushRun``), and the next
  chunk is read only when every peer channel's write buffer has drained
  (``drain``): the SSH windows push back on the operator's CLI.
* get: the peer's ``begin``/``data``/``progress``/``done`` lines are written
  to the operator's channel as they came (``msgspec.Raw``, not decoded
  twice), and the next line is read only when the operator's channel holds
  less than ``copy.ACK_BELOW``: a slow operator stops the peer channel's
  window, and the peer then stops acknowledging its agents.

The peer answers from its own agents only (``Ctx.from_peer``) and writes no
audit row: the replica asked writes the one row, with every machine's
result. A peer that dies or closes mid-copy ends each of its machines that
had no ``done`` line as ``unreachable``, with why; closing the part (the
operator went away) closes the channel, and the peer cancels the copy on
its machines.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from typing import Any, Callable

import msgspec

from centrality_core.aio import within

from .copy import ACK_BELOW, Copy
from .peering import Peers

log = logging.getLogger("centrality.copy")

BACKLOG_POLL = 0.02


class PeerCopy:
    def __init__(self, peers: Peers, replica: str, names: list[str], argv: list[str], *,
                 emit: Callable[[Any], None], backlog: Callable[[], int] = lambda: 0) -> None:
        self.peers = peers
        self.replica = replica
        self.argv = argv  # the request, machines named, without the trailing "-- PATH" split off
        self.emit = emit
        self.backlog = backlog
        self.copies = {n: Copy(n) for n in names}
        #: Why the peer's part did not end with its summary (or "").
        self.failure = ""
        self._process = None
        self._reader: asyncio.Task | None = None
        self._not_run: dict[str, str] = {}

    async def open(self) -> None:
        """Open the request on the peer (ConnectError, asyncssh.Error, OSError or TimeoutError:
        it cannot be reached) and start reading what it answers."""
        client = await self.peers.client(self.replica)
        self._process = await within(
            client.connection.create_process(shlex.join(self.argv), encoding=None), self.peers.connect_timeout)
        for c in self.copies.values():
            c.status = "running"
        self._reader = asyncio.ensure_future(self._read())

    # ------------------------------------------------------------------ put: the upload

    @property
    def writing(self) -> bool:
        return self._process is not None and not self.failure and not self._reader.done()

    def write(self, data: bytes) -> None:
        if self.writing:
            try:
                self._process.stdin.write(data)
            except Exception as exc:  # noqa: BLE001 - the link broke: its copies end unreachable
                self._lost(exc)

    async def drain(self) -> None:
        if self.writing:
            try:
                await self._process.stdin.drain()
            except Exception as exc:  # noqa: BLE001
                self._lost(exc)

    def write_eof(self) -> None:
        if self.writing:
            try:
                self._process.stdin.write_eof()
            except Exception as exc:  # noqa: BLE001
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if not self.failure:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self.failure = f"replica {self.replica} went away during the copy ({reason})"

    # ------------------------------------------------------------------ what the peer answers

    async def _read(self) -> None:
        try:
            async for line in self._process.stdout:
                if line.strip():
                    await self._line(line.rstrip(b"\n"))
            result = await self._process.wait()
            if result.exit_status is None:
                self._lost(ConnectionError("the link closed"))
            elif any(not c.finished for c in self.copies.values()):
                err = (result.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                why = err[-1][:300] if err else f"status {result.exit_status}"
                try:
                    why = msgspec.json.decode(why)["reason"]
                except Exception:  # noqa: BLE001 - not an error document: as it came
                    pass
                self.failure = f"replica {self.replica}: {why}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the link broke under it
            self._lost(exc)
        finally:
            self._settle()

    async def _line(self, line: bytes) -> None:
        try:
            doc = msgspec.json.decode(line)
        except msgspec.DecodeError:
            self.failure = f"replica {self.replica} sent a line that is not JSON"
            raise ConnectionError(self.failure) from None
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "start":
            for s in doc.get("skipped", []):
                self._not_run[s.get("machine")] = f"{s.get('reason')} on replica {self.replica}"
            for name in doc.get("unknown", []):
                self._not_run[name] = f"unknown to replica {self.replica}"
            return
        if kind == "summary":
            return
        machine = doc.get("machine")
        if kind in ("begin", "data", "done") and machine not in self.copies:
            return  # another machine cannot be answered for by this peer
        if kind == "progress":
            doc["machines"] = {n: b for n, b in (doc.get("machines") or {}).items() if n in self.copies}
            line = msgspec.json.encode(doc)
        if kind == "done":
            c = self.copies[machine]
            if c.finished:
                return
            c.status = doc.get("status") if doc.get("status") in ("ok", "failed", "timeout", "cancelled",
                                                                   "unreachable") else "failed"
            c.error, c.code_name = doc.get("error"), doc.get("refusal") or ""
            c.files, c.bytes, c.sha256 = int(doc.get("files") or 0), int(doc.get("bytes") or 0), doc.get("sha256") or ""
        while self.backlog() > ACK_BELOW:  # the operator is slow: stop reading the peer
            await asyncio.sleep(BACKLOG_POLL)
        self._emit(msgspec.Raw(line))

    def _settle(self) -> None:
        """Every machine without its ``done`` line ends now, with why."""
        for c in self.copies.values():
            if c.finished:
                continue
            c.status = "unreachable" if self.failure or c.name in self._not_run else "failed"
            c.error = self._not_run.get(c.name) or self.failure or \
                f"replica {self.replica} ended the copy without an answer for it"
            self._emit({"type": "done", **c.json()})

    def _emit(self, doc: Any) -> None:
        try:
            self.emit(doc)
        except Exception:  # noqa: BLE001 - the operator's channel is gone; the part still ends cleanly
            log.debug("cannot write to the operator", exc_info=True)

    # ------------------------------------------------------------------ the end

    async def wait(self) -> None:
        if self._reader is not None:
            await asyncio.shield(self._reader)

    def close(self, why: str = "cancelled by the operator") -> None:
        """The operator went away: close the channel (the peer cancels on its machines)."""
        if self._process is not None:
            self._process.close()
        for c in self.copies.values():
            if not c.finished:
                c.status, c.error = "cancelled", why
