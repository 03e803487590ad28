"""``ssh NAME`` on a machine another replica holds: the session relayed over the peer link.

The replica the operator reached opens the same request on its kept
connection to the replica holding the machine (``peering.Peers``): a session
channel with the PTY request (``TERM`` and size of the operator's), the
exec ``ssh [--force] NAME [-- CMD]`` (CMD verbatim, one word, so the peer
hands the machine's shell exactly what the operator typed), and then pipes
bytes both ways: keystrokes and stdin, EOF and window changes to the peer;
stdout, stderr and the exit status back. The peer answers from its own
agent (``Ctx.from_peer``) and writes no audit row; the replica asked writes
the one row, with the operator as actor.

Flow control: nothing is buffered whole. When the peer channel's write
buffer passes its high-water mark, the operator's channel stops being read
(``pause_reading``) until it drains; when the operator's channel passes its
own (``OperatorSession.pause_writing`` -> ``operator_full``), the peer channel
stops being read, so the SSH window pushes back on the peer, whose own relay
then stops acknowledging the agent.

The operator's channel closing closes the peer channel (the peer cancels the
session on the machine). The peer channel closing ends the operator's
session: with the peer's exit status, or, when the link died under it (the
peer crashed), with ``lost`` set: the request then ends with 255 and a
sentence naming the replica.
"""

from __future__ import annotations

import asyncio
import logging
import shlex

import asyncssh

log = logging.getLogger("centrality.shell")


def peer_command(name: str, command: str, *, force: bool) -> str:
    """The request the peer runs for a session on ``name`` running ``command`` ("" for the
    login shell), passed on as one word so the peer gives the machine's shell exactly it. Pure."""
    return shlex.join(["ssh", *(["--force"] if force else []), name, *(["--", command] if command else [])])


class PeerShell(asyncssh.SSHClientSession):
    """Both ends of one relayed session: the client session of the peer channel, and the
    sink (``input``/``eof``/``resize``) of the operator's ``OperatorSession``."""

    def __init__(self, replica: str, operator, recorder=None) -> None:
        self.replica = replica
        self.operator = operator  # the operator's OperatorSession (chan, write_raw)
        self.recorder = recorder
        self.chan: asyncssh.SSHClientChannel | None = None
        #: The operator's channel is not being read (the peer channel is full).
        self.paused = False
        #: The peer link went away before the peer's exit status (why, or "").
        self.lost = ""
        self._closed = asyncio.get_running_loop().create_future()

    async def open(self, connection, command: str, term: tuple[str, int, int] | None) -> None:
        kwargs: dict = {"request_pty": False}
        if term is not None:
            kwargs = {"term_type": term[0], "term_size": (term[1], term[2]), "request_pty": "force"}
        await connection.create_session(lambda: self, command, encoding=None,
                                        env={"CENTRALITY_SESSION": "1"}, **kwargs)

    # ------------------------------------------------------------------ operator -> peer (the sink)

    def input(self, data: bytes) -> None:
        if self.chan is not None and not self._closed.done():
            self.chan.write(data)

    def eof(self) -> None:
        if self.chan is not None and not self._closed.done():
            self.chan.write_eof()

    def resize(self, cols: int, rows: int) -> None:
        if self.chan is not None and not self._closed.done():
            self.chan.change_terminal_size(cols, rows)

    def pause_writing(self) -> None:  # the peer channel is full: stop reading the operator
        self.paused = True
        self.operator.chan.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self.operator.chan.resume_reading()

    # ------------------------------------------------------------------ peer -> operator

    def connection_made(self, chan) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype) -> None:
        try:
            if datatype == asyncssh.EXTENDED_DATA_STDERR:
                self.operator.chan.write_stderr(data)
            else:
                self.operator.write_raw(data)
                if self.recorder is not None:
                    self.recorder.write(data)
        except Exception:  # noqa: BLE001 - the operator's channel is closing: its task ends us
            return

    def operator_full(self, full: bool) -> None:
        """The operator's channel passed its high-water mark (or drained below its low one):
        hold the peer channel (or read it again)."""
        if self.chan is None or self._closed.done():
            return
        if full:
            self.chan.pause_reading()
        else:
            self.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.chan is not None and self.chan.get_exit_status() is None:
            reason = getattr(exc, "reason", None) or (str(exc) if exc else "") or "closed the session"
            self.lost = f"replica {self.replica} went away during the session ({reason})"
        if self.paused:  # never leave the operator's channel unread
            self.paused = False
            try:
                self.operator.chan.resume_reading()
            except Exception:  # noqa: BLE001
                pass
        if not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------------ the end

    async def wait(self) -> int | None:
        """The peer's exit status, or None when the link died first (``lost`` says how)."""
        await self._closed
        return None if self.lost else self.chan.get_exit_status()

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()
