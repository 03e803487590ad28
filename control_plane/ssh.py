"""The SSH face of the control plane: authentication per connection, and the
two kinds of session a client may open.

* ``centrality-agent`` subsystem: the agent protocol (``agent_session.py``),
  allowed for agent keys and for unknown keys logging in to enrol.
* exec requests (``ssh HOST machines ls``): operator requests
  (``requests/``), allowed for operator and viewer keys. A shell request gets
  a short usage text, so a person who types ``ssh -p 8022 HOST`` learns what
  this is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING

import asyncssh
import msgspec

from centrality_core import protocol as p
from centrality_core.errors import CentralityError, Forbidden

from . import requests
from .agent_session import AgentSession
from .logs import contextual

if TYPE_CHECKING:  # pragma: no cover
    from .server import ControlPlane

_ids = itertools.count(1)

#: SSH handshakes in progress at most; connections beyond are turned away at
#: once ("busy", the client backs off and retries). Each handshake costs a few
#: ms of CPU: when a whole fleet reconnects, serving them in turn finishes
#: them, where interleaving thousands makes each too slow to beat its timeout.
MAX_HANDSHAKES = 128


class ConnectionHandler(asyncssh.SSHServer):
    """One client connection: its key, role and sessions."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.id = next(_ids)
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.fingerprint = ""
        self.public_key = ""
        self.key_name = ""
        self.role: str | None = None
        self.machine: str | None = None
        self.log: logging.LoggerAdapter = contextual("centrality.ssh", f"conn={self.id}")
        self.handshaking = False  # counted in cp.handshakes until authenticated or gone

    # ------------------------------------------------------------------ connection

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.cp.connections.add(self)
        if self.cp.handshakes >= MAX_HANDSHAKES:
            self.log.debug("busy: %d handshakes in progress; turning %s away", self.cp.handshakes, self.peer)
            asyncio.get_running_loop().call_soon(
                conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS,
                "control plane busy (many machines connecting at once); retry shortly")
            return
        self.handshaking = True
        self.cp.handshakes += 1

    def _handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.cp.handshakes -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshake_over()
        self.cp.connections.discard(self)
        self.cp.auth.detach(self)

    def close(self, reason: str = "") -> None:
        if self.conn is not None:
            self.log.info("closing connection: %s", reason)
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason[:200] or "closed")

    # ------------------------------------------------------------------ authentication

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fp = key.get_fingerprint("sha256")
        row = self.cp.auth.keys.get(fp)
        if row is not None:
            self.role, self.key_name = row["role"], row["name"]
        elif username == p.ENROLL_USER:
            self.role, self.key_name = "enrolling", "enrolling"
        else:
            self.log.warning("refused unknown or revoked key %s for %r from %s", fp, username, self.peer)
            self.conn.send_auth_banner(
                f"centrality: key {fp} is not enrolled on this control plane (unknown or revoked)\n")
            return False
        self.fingerprint = fp
        self.public_key = key.export_public_key().decode().strip()
        return True

    def auth_completed(self) -> None:
        self._handshake_over()
        self.log.debug("authenticated %s as %s (%s)", self.fingerprint, self.key_name, self.role)
        if self.role != "enrolling":
            self.cp.auth.attach(self)

    # ------------------------------------------------------------------ sessions

    def session_requested(self):
        if self.role in ("agent", "enrolling"):
            return AgentSession(self.cp, self)
        return OperatorSession(self.cp, self)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.key_name}"


#: Bytes of stdin an operator channel keeps before its request reads them; then reading pauses.
EARLY_INPUT = 1024 * 1024

USAGE = b"""This is a Centrality control plane. Run a request, e.g.:
  ssh -p PORT HOST machines ls
  ssh -p PORT HOST help
"""


class OperatorSession(asyncssh.SSHServerSession):
    """An exec request: parse it, check the role, run it, answer in JSON."""

    def __init__(self, cp: ControlPlane, handler: ConnectionHandler) -> None:
        self.cp = cp
        self.handler = handler
        self.chan: asyncssh.SSHServerChannel | None = None
        self.command: str | None = None
        self.task: asyncio.Task | None = None
        #: (TERM, cols, rows) when the client asked for a PTY; only the ``ssh`` request uses it.
        self.pty: tuple[str, int, int] | None = None
        #: Where the client's bytes go while a request relays them (``ssh``: a ShellRelay).
        self.sink = None
        #: What the client sent before its request attached a sink (bounded; reading pauses).
        self._early = bytearray()
        self._early_eof = False
        self._early_paused = False

    def connection_made(self, chan) -> None:
        self.chan = chan

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        # Accepted for the ``ssh`` request (the machine's shell gets a PTY of this
        # size and TERM); the other requests ignore it.
        self.pty = (term_type or "xterm", term_size[0] or 80, term_size[1] or 24)
        return True

    def terminal_size_changed(self, width, height, pixwidth, pixheight) -> None:
        if self.pty is not None:
            self.pty = (self.pty[0], width, height)
        if self.sink is not None:
            self.sink.resize(width, height)

    def attach(self, sink) -> None:
        """Send the client's bytes, EOF and window changes to ``sink`` (None: drop them).

        What arrived before (the CLI writes its upload or keystrokes as soon as the
        channel is open) goes to the sink first, in order."""
        self.sink = sink
        if sink is None:
            return
        early, self._early = bytes(self._early), bytearray()
        if early:
            sink.input(early)
        if self._early_eof:
            sink.eof()
        if self._early_paused:
            self._early_paused = False
            if not getattr(sink, "paused", False):
                self.chan.resume_reading()

    def write_raw(self, data: bytes) -> None:
        self.chan.write(data)

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data, datatype) -> None:
        if self.sink is not None:
            self.sink.input(data)
        elif len(self._early) < EARLY_INPUT:  # kept for a request that reads stdin (ssh, cp put)
            self._early += data
            if len(self._early) >= EARLY_INPUT and not self._early_paused:
                self._early_paused = True
                self.chan.pause_reading()

    def eof_received(self) -> bool:
        if self.sink is not None:
            self.sink.eof()
        else:
            self._early_eof = True
        return True  # stdin closed; keep the channel open for our answer

    def connection_lost(self, exc) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def write_json(self, value: object) -> None:
        """Write one JSON document (one line) to stdout; used by streaming requests."""
        self.chan.write(msgspec.json.encode(value) + b"\n")

    async def _run(self) -> None:
        if self.command is None:
            self.chan.write(USAGE)
            self.chan.exit(0)
            return
        status = 0
        try:
            if self.handler.role not in ("operator", "viewer"):
                raise Forbidden("agent keys cannot make operator requests")
            reply = await requests.handle(self.cp, self.handler, self.command, self.write_json,
                                          self.chan.get_write_buffer_size, self)
            if reply is not None:
                if reply.data is not None:  # None: the request wrote raw bytes (ssh)
                    self.write_json(reply.data)
                status = reply.status
        except CentralityError as exc:
            status = exc.exit_code
            self.chan.write_stderr(msgspec.json.encode({"error": exc.code, "reason": exc.reason}) + b"\n")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - report, keep serving others
            self.handler.log.exception("request %r failed", self.command)
            status = 1
            self.chan.write_stderr(b'{"error": "internal_error", "reason": "internal error; see the control plane log"}\n')
        self.handler.log.info("%s ran %r -> %d", self.handler.actor, self.command[:200], status)
        try:
            self.chan.exit(status)
        except (OSError, asyncssh.Error):
            pass
