"""The SSH face of the control plane: authentication per connection, and the
two kinds of session a client may open.

* ``centrality-agent`` subsystem: the agent protocol (``agent_session.py``),
  allowed for agent keys and for unknown keys logging in to enrol.
* exec requests (``ssh HOST machines ls``): operator requests
  (``requests/``), allowed for operator and viewer keys. A shell request gets
  a short usage text, so a person who types ``ssh -p 8022 HOST`` learns what
  this is.
* a session on a machine: an operator who logs in *as the machine's name*
  (``ssh -p 8022 gpu-07@HOST [CMD]``) gets the ``ssh gpu-07 [-- CMD]`` request:
  the machine's shell, or CMD run there. Only such a session is granted a PTY
  (the machine's shell gets one of that size and TERM); every other request
  is refused one, as it answers JSON. A peer replica relaying such a session
  (``peer_shell.py``) is granted one too: it says so with
  ``CENTRALITY_SESSION=1`` in the channel's environment.

``Connections`` holds every open connection (the server closes them all at
shutdown; tests and ``status`` read it) and what a connection needs: the key
cache, the admission gate, the login grace, and the services its sessions are
given.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shlex
from typing import Iterator

import asyncssh
import msgspec

from centrality_core import protocol as p
from centrality_core.errors import CentralityError, Forbidden

from . import requests
from .admission import Admission
from .agent_session import AgentSession, not_an_operator
from .auth import Auth
from .logs import contextual
from .services import AgentServices, RequestServices

_ids = itertools.count(1)

BUSY = "control plane busy (many machines connecting at once)"
TOO_MANY_ENROLLING = "too many machines enrolling from your address at once; retry shortly"


class Connections:
    """The open client connections, and what each is given (``new`` makes one per accept)."""

    def __init__(self, *, auth: Auth, admission: Admission, login_grace: float,
                 agent_services: AgentServices, request_services: RequestServices) -> None:
        self.auth = auth
        self.admission = admission
        self.login_grace = login_grace
        self.agent_services = agent_services
        self.request_services = request_services
        self.open: set[ConnectionHandler] = set()

    def new(self) -> ConnectionHandler:
        """A handler for one accepted connection (asyncssh's server factory)."""
        return ConnectionHandler(self)

    def __iter__(self) -> Iterator[ConnectionHandler]:
        return iter(list(self.open))

    def __len__(self) -> int:
        return len(self.open)

    def close_all(self, reason: str) -> None:
        for handler in list(self.open):
            handler.close(reason)


class ConnectionHandler(asyncssh.SSHServer):
    """One client connection: its key, role and sessions.

    From TCP accept, a connection has ``settings.login_grace`` seconds to
    become useful: an operator or viewer key authenticated, or an agent's
    well-formed hello received (its registration may then take as long as the
    store does). Past it, it is closed (an unknown key logged in to enrol that
    never says hello, a client that stalls the handshake).
    """

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.auth = connections.auth
        self.gate = connections.admission
        self.id = next(_ids)
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.source = "?"  # the peer's address, for per-source limits
        self.via = ""      # " via PROXY:PORT" when a load balancer brought it
        self.fingerprint = ""
        self.public_key = ""
        self.key_name = ""
        self.role: str | None = None
        self.machine: str | None = None
        self.username = ""
        self.log: logging.LoggerAdapter = contextual("centrality.ssh", f"conn={self.id}")
        self.handshaking = False  # counted in the gate until authenticated or gone
        self.enrolling = False    # counted in the gate until registered or gone
        self._grace: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        # The client's address: from the PROXY header of a trusted load balancer
        # when there is one (proxylisten.py), else the socket's peer.
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source, self.peer = str(peer[0]), _host_port(peer)
        proxy = conn.get_extra_info("proxied_by")
        self.via = f" via {_host_port(proxy)}" if proxy else ""
        self.connections.open.add(self)
        loop = asyncio.get_running_loop()
        refused = self.gate.connect(self.source)
        if refused == "rate":
            # Closed before our version line is sent: a flood costs a TCP accept, not a
            # handshake (what OpenSSH's MaxStartups does; clients back off as when busy).
            self.log.debug("turning %s%s away: connecting too fast", self.peer, self.via)
            conn.abort()
            return
        if refused is not None:
            delay = self.gate.retry_after()
            self.log.debug("turning %s away for %gs: %d handshakes in progress", self.peer, delay,
                           self.gate.handshakes)
            # The agent comes back when told (sshlink.retry_after reads it); others retry shortly.
            loop.call_soon(conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, f"{BUSY}; retry in {delay:g}s")
            return
        self.handshaking = True
        self._grace = loop.call_later(self.connections.login_grace, self._grace_over)

    def _handshake_over(self, completed: bool = False) -> None:
        if self.handshaking:
            self.handshaking = False
            self.gate.handshake_over(completed)

    def settled(self) -> None:
        """The connection is what it came for (operator authenticated, agent registered)."""
        self.end_grace()
        if self.enrolling:
            self.enrolling = False
            self.gate.enrolled(self.source)

    def end_grace(self) -> None:
        """No closing at the login grace: the connection settled, or an agent's well-formed
        hello arrived (from there the control plane is the slow party, its store in a join
        storm, and closing would throw away a finished handshake for the agent to redo)."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _grace_over(self) -> None:
        self._grace = None
        self.log.info("closing %s: not registered within the login grace (%gs)",
                      self.peer, self.connections.login_grace)
        self.conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                             f"not registered within {self.connections.login_grace:g}s")

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshake_over()
        self.settled()
        self.connections.open.discard(self)
        self.auth.detach(self)

    def close(self, reason: str = "") -> None:
        if self.conn is not None:
            self.log.info("closing connection: %s", reason)
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason[:200] or "closed")

    # ------------------------------------------------------------------ authentication

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey):
        fp = key.get_fingerprint("sha256")
        row = self.auth.keys.get(fp) or self.auth.replica_row(fp)
        if row is None and self.auth.shared:  # maybe added or enrolled on another replica
            return self._looked_up(username, key, fp)
        return self._validated(username, key, fp, row)

    async def _looked_up(self, username: str, key: asyncssh.SSHKey, fp: str) -> bool:
        try:
            row = await self.auth.lookup(fp)
        except CentralityError:
            row = None
        return self._validated(username, key, fp, row)

    def _validated(self, username: str, key: asyncssh.SSHKey, fp: str, row: dict | None) -> bool:
        if row is not None:
            self.role, self.key_name = row["role"], row["name"]
        elif username == p.ENROLL_USER:
            self.role, self.key_name = "enrolling", "enrolling"
        else:
            self.log.warning("refused unknown or revoked key %s for %r from %s%s", fp, username, self.peer,
                             self.via)
            self.conn.send_auth_banner(
                f"centrality: key {fp} is not enrolled on this control plane (unknown or revoked)\n")
            return False
        self.fingerprint = fp
        self.public_key = key.export_public_key().decode().strip()
        return True

    def auth_completed(self) -> None:
        self._handshake_over(completed=True)
        self.log.debug("authenticated %s as %s (%s)", self.fingerprint, self.key_name, self.role)
        if self.role == "enrolling":
            if not self.gate.enrol(self.source):
                self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, TOO_MANY_ENROLLING)
                return
            self.enrolling = True
            return
        self.auth.attach(self)
        if self.role in ("operator", "viewer", "replica"):
            self.settled()

    # ------------------------------------------------------------------ sessions

    def session_requested(self):
        if self.role in ("agent", "enrolling"):
            return AgentSession(self.connections.agent_services, self)
        return OperatorSession(self.connections.request_services, self)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.key_name}"


def _host_port(peer) -> str:
    host = str(peer[0])
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


#: Bytes of stdin an operator channel keeps before its request reads them; then reading pauses.
EARLY_INPUT = 1024 * 1024

USAGE = b"""This is a Centrality control plane. Run a request, e.g.:
  ssh -p PORT HOST machines ls
  ssh -p PORT HOST help
"""


class OperatorSession(asyncssh.SSHServerSession):
    """An exec request: parse it, check the role, run it, answer in JSON."""

    def __init__(self, services: RequestServices, handler: ConnectionHandler) -> None:
        self.services = services
        self.handler = handler
        self.chan: asyncssh.SSHServerChannel | None = None
        self.command: str | None = None
        self.task: asyncio.Task | None = None
        #: (TERM, cols, rows) of the PTY granted to a machine session (``ssh`` request).
        self.pty: tuple[str, int, int] | None = None
        #: A machine session's command as the client sent it (for the machine's shell to parse).
        self.raw_command: str | None = None
        #: Where the client's bytes go while a request relays them (``ssh``: a ShellRelay).
        self.sink = None
        #: What the client sent before its request attached a sink (bounded; reading pauses).
        self._early = bytearray()
        self._early_eof = False
        self._early_paused = False

    def connection_made(self, chan) -> None:
        self.chan = chan

    @property
    def machine_session(self) -> str | None:
        """The machine an operator logged in as (``gpu-07@HOST``), or None. A login name
        that is no machine is one only if the client says so (``centrality ssh`` sets
        ``CENTRALITY_SESSION=1``), so that the ssh request can tell what is wrong with it."""
        name = self.handler.username
        if self.handler.role != "operator":
            return None
        if name in self.services.registry:
            return name
        if self.chan is not None and self.chan.get_environment().get("CENTRALITY_SESSION") == "1":
            return name
        return None

    @property
    def relayed_session(self) -> bool:
        """A peer replica relaying an operator's machine session (``peer_shell.py``)."""
        return (self.handler.role == "replica" and self.chan is not None
                and self.chan.get_environment().get("CENTRALITY_SESSION") == "1")

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        if self.machine_session is None and not self.relayed_session:
            return False  # the requests answer JSON: no terminal
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

    def pause_writing(self) -> None:  # the client is slow: a sink that relays may hold its source
        if hasattr(self.sink, "operator_full"):
            self.sink.operator_full(True)

    def resume_writing(self) -> None:
        if hasattr(self.sink, "operator_full"):
            self.sink.operator_full(False)

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
        machine = self.machine_session
        if machine is not None:  # gpu-07@HOST [CMD]: the machine's shell, or CMD there, verbatim
            force = self.chan.get_environment().get("CENTRALITY_FORCE") == "1"
            self.raw_command = self.command or ""
            self.command = shlex.join(["ssh", *(["--force"] if force else []), machine]) + (
                f" -- {shlex.quote(self.command)}" if self.command else "")
        if self.command is None:
            self.chan.write(USAGE)
            self.chan.exit(0)
            return
        status = 0
        try:
            if self.handler.role not in ("operator", "viewer", "replica"):
                raise Forbidden(not_an_operator(self.handler.role))
            reply = await requests.handle(self.services, self.handler, self.command, self.write_json,
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
