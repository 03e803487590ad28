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
from .agent_session import AgentSession, not_an_operator
from .logs import contextual

if TYPE_CHECKING:  # pragma: no cover
    from .server import ControlPlane

_ids = itertools.count(1)

BUSY = "control plane busy (many machines connecting at once); retry shortly"
TOO_MANY_ENROLLING = "too many machines enrolling from your address at once; retry shortly"


class ConnectionHandler(asyncssh.SSHServer):
    """One client connection: its key, role and sessions.

    From TCP accept, a connection has ``settings.login_grace`` seconds to
    become useful: an operator or viewer key authenticated, or an agent
    registered. Past it, it is closed (an unknown key logged in to enrol that
    never says hello, a client that stalls the handshake).
    """

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.gate = cp.admission
        self.id = next(_ids)
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.source = "?"  # the peer's address, for per-source limits
        self.fingerprint = ""
        self.public_key = ""
        self.key_name = ""
        self.role: str | None = None
        self.machine: str | None = None
        self.log: logging.LoggerAdapter = contextual("centrality.ssh", f"conn={self.id}")
        self.handshaking = False  # counted in the gate until authenticated or gone
        self.enrolling = False    # counted in the gate until registered or gone
        self._grace: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source, self.peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        self.cp.connections.add(self)
        loop = asyncio.get_running_loop()
        refused = self.gate.connect(self.source)
        if refused == "rate":
            # Closed before our version line is sent: a flood costs a TCP accept, not a
            # handshake (what OpenSSH's MaxStartups does; clients back off as when busy).
            self.log.debug("turning %s away: connecting too fast", self.peer)
            conn.abort()
            return
        if refused is not None:
            self.log.debug("turning %s away: %d handshakes in progress", self.peer, self.gate.handshakes)
            loop.call_soon(conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, BUSY)
            return
        self.handshaking = True
        self._grace = loop.call_later(self.cp.settings.login_grace, self._grace_over)

    def _handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.gate.handshake_over()

    def settled(self) -> None:
        """The connection is what it came for (operator authenticated, agent registered)."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self.enrolling:
            self.enrolling = False
            self.gate.enrolled(self.source)

    def _grace_over(self) -> None:
        self._grace = None
        self.log.info("closing %s: not registered within the login grace (%gs)",
                      self.peer, self.cp.settings.login_grace)
        self.conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                             f"not registered within {self.cp.settings.login_grace:g}s")

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshake_over()
        self.settled()
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
        if self.role == "enrolling":
            if not self.gate.enrol(self.source):
                self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, TOO_MANY_ENROLLING)
                return
            self.enrolling = True
            return
        self.cp.auth.attach(self)
        if self.role in ("operator", "viewer"):
            self.settled()

    # ------------------------------------------------------------------ sessions

    def session_requested(self):
        if self.role in ("agent", "enrolling"):
            return AgentSession(self.cp, self)
        return OperatorSession(self.cp, self)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.key_name}"


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

    def connection_made(self, chan) -> None:
        self.chan = chan

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        return False  # no request needs a terminal: answers are JSON

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
        pass  # no request reads stdin

    def eof_received(self) -> bool:
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
                raise Forbidden(not_an_operator(self.handler.role))
            reply = await requests.handle(self.cp, self.handler, self.command, self.write_json,
                                          self.chan.get_write_buffer_size)
            if reply is not None:
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
