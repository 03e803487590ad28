"""One agent's protocol session on its SSH channel.

Callback-driven (no task per connection): ``data_received`` splits frames,
decodes them and dispatches through a table from message type to handler.
Only the hello, which may touch the store (join token, key enrolment), runs
as a short task; frames that arrive meanwhile wait in a bounded list.

A malformed or oversized frame gets ``error`` and the connection is closed.
An unknown kind gets ``unsupported`` and the session goes on.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import asyncssh
import msgspec

from centrality_core import names, protocol as p
from centrality_core.errors import Forbidden, ProtocolError, RegistrationRefused, StoreError, UnknownKind

from .logs import contextual
from .peer import Peer
from .services import AgentServices
from .untrusted import clean, needs_cleaning

HELLO_TIMEOUT = 15.0
MAX_EARLY_FRAMES = 64


def not_an_operator(role: str | None) -> str:
    """Why a key that is not an operator's or a viewer's cannot make requests."""
    if role == "enrolling":
        return ("this key is not enrolled on this control plane: operator requests need an "
                "operator or viewer key (`centrality keys add`)")
    return "agent keys cannot make operator requests"


class AgentSession(asyncssh.SSHServerSession):
    def __init__(self, services: AgentServices, handler: Peer) -> None:
        self.services = services
        self.handler = handler
        self.log = handler.log
        self.chan: asyncssh.SSHServerChannel | None = None
        self.frames = p.FrameBuffer(services.max_frame_bytes)
        self.name: str | None = None  # set once registered
        self.closed = False
        self._early: list[bytes] | None = None  # frames received before registration
        self._hello_timer: asyncio.TimerHandle | None = None
        self._exec: str | None = None
        #: The protocol the agent's hello said it speaks (shell and file messages need 1.2).
        self.protocol: tuple[int, int] = (1, 0)
        #: Handlers get the decoded message and the frame it came in.
        self._handlers: dict[type, Callable[[p.Message, bytes], None]] = {
            p.Heartbeat: self._on_heartbeat,
            p.MetricsBatch: self._on_metrics,
            p.CommandOutput: self._on_command_message,
            p.CommandExit: self._on_command_message,
            p.HealthReport: self._on_health,
            # shell sessions and file copies (1.2), routed by id like command output
            p.ShellOutput: self._on_command_message,
            p.ShellExit: self._on_command_message,
            p.FileChunk: self._on_command_message,
            p.FileAck: self._on_command_message,
            p.FileDone: self._on_command_message,
            p.Error: self._on_peer_error,
            p.Unsupported: self._on_unsupported,
        }

    # ------------------------------------------------------------------ asyncssh callbacks

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan
        self._hello_timer = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, self._fail, "hello_timeout", "no hello within %gs" % HELLO_TIMEOUT)

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == p.AGENT_SUBSYSTEM

    def exec_requested(self, command: str) -> bool:
        self._exec = command  # answered in session_started: a clear "forbidden"
        return True

    def session_started(self) -> None:
        if self._exec is not None:
            self._hello_timer.cancel()
            err = Forbidden(not_an_operator(self.handler.role))
            self.chan.write_stderr(msgspec.json.encode({"error": err.code, "reason": err.reason}) + b"\n")
            self.chan.exit(err.exit_code)

    def shell_requested(self) -> bool:
        return False

    def data_received(self, data: bytes, datatype) -> None:
        if self.closed:
            return
        try:
            frames = self.frames.feed(data)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
            return
        for frame in frames:
            if self.closed:
                return
            if self.name is not None:
                self._dispatch(frame)
            elif self._early is None:
                self._early = []
                asyncio.get_running_loop().create_task(self._hello(frame))
            elif len(self._early) < MAX_EARLY_FRAMES:
                self._early.append(frame)
            else:
                self._fail("too_early", "too many messages before registration completed")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._hello_timer:
            self._hello_timer.cancel()
        self.services.holds.forget(self)
        if self.name is not None:
            self.log.info("agent %s disconnected", self.name)
            self.services.registry.disconnect(self.name, self)

    # ------------------------------------------------------------------ sending

    def send(self, msg: p.Message) -> None:
        self.send_bytes(p.encode(msg))

    def send_bytes(self, frame: bytes) -> None:
        """Send an encoded message (``protocol.encode``)."""
        if not self.closed and self.chan is not None:
            try:
                self.chan.write(frame)
            except BrokenPipeError:  # the agent closed the channel; connection_lost follows
                pass

    def close(self, reason: str = "") -> None:
        """Close the whole SSH connection of this agent."""
        if not self.closed:
            self.closed = True
            self.log.info("closing agent connection: %s", reason)
            self.handler.close()

    def resume_metrics(self) -> None:
        """End this agent's hold (holds.py): it sends its backlog now."""
        self.send(p.MetricsResume())

    def _fail(self, code: str, reason: str) -> None:
        """Protocol error: tell the peer why, then close its connection."""
        self.log.warning("protocol error from %s: %s: %s", self.handler.peer, code, reason)
        self.send(p.Error(code=code, reason=reason))
        self.close(reason)

    def _reject(self, code: str, reason: str) -> None:
        self.log.warning("registration refused (%s): %s", code, reason)
        self.send(p.Rejected(code=code, reason=reason))
        self.close(reason)

    # ------------------------------------------------------------------ hello / registration

    async def _hello(self, frame: bytes) -> None:
        if self._hello_timer:
            self._hello_timer.cancel()  # the hello is here; enrolment may take a while
        try:
            await self._register(frame)
        except RegistrationRefused as exc:
            self._reject(exc.code, exc.reason)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
        except StoreError as exc:
            self._reject("store_unavailable", f"control plane store unavailable, retry later: {exc.reason}")
        except Exception:  # noqa: BLE001 - one bad session must not kill the server
            self.log.exception("hello failed")
            self._reject("internal_error", "internal error in the control plane; see its log")
        if self.name is not None and self._early:
            early, self._early = self._early, []
            for f in early:
                if self.closed:
                    break
                self._dispatch(f)

    async def _register(self, frame: bytes) -> None:
        version = p.peek_protocol(frame)
        if (not isinstance(version, list) or len(version) != 2
                or not all(isinstance(v, int) for v in version)):
            raise ProtocolError("the first message must be a hello with protocol [major, minor]",
                                code="malformed_frame")
        if version[0] != p.PROTOCOL_MAJOR:
            raise RegistrationRefused(
                f"protocol {version[0]}.{version[1]} is not supported; this control plane "
                f"speaks {p.PROTOCOL_MAJOR}.x (upgrade the agent or the control plane)",
                code="unsupported_version")
        msg = p.agent_decoder.decode(frame)
        if not isinstance(msg, p.Hello):
            raise ProtocolError(f"expected hello first, got {msg.__struct_config__.tag}",
                                code="malformed_frame")
        clean(msg)
        if not names.is_valid(msg.name):
            raise RegistrationRefused(
                f"invalid machine name {msg.name[:80]!r}: a name is {names.NAME_RULE}",
                code="invalid_name")
        info, identity = msgspec.to_builtins(msg.info), msg.info.identity()
        self.handler.end_grace()  # the hello is well-formed: registering may take the store's time
        async with self.services.registry.registering(msg.name):
            reg, enrolled = await self._take(msg, info, identity)
        if reg is None or reg.refusal is not None:
            if enrolled:  # gone, or the name was taken while the token was checked: undo
                await self.services.auth.unenrol(self.handler, msg.join_token)
            if reg is None:
                return
            raise RegistrationRefused(reg.refusal.reason, code=reg.refusal.code)
        self._registered(msg, reg)

    async def _take(self, msg: p.Hello, info: dict, identity: tuple):
        """Check, enrol if need be, and register (on a shared store: as the database decides)."""
        registry, fingerprint = self.services.registry, self.handler.fingerprint
        shared = registry.shared
        if shared is not None:
            await shared.refresh(msg.name)  # a name another replica registered, or let go of
        enrolled = False
        if self.handler.role == "enrolling" and registry.check(msg.name, identity, fingerprint) is None:
            # Enrol only what will register: a refused hello leaves no key and spends no
            # token use (when the check refuses, ``register`` below refuses and records why).
            await self.services.auth.enrol(self.handler, msg.name, msg.join_token)
            enrolled = True
        taken = None
        if shared is not None and not self.closed and registry.check(msg.name, identity, fingerprint) is None:
            local = registry.machine(msg.name)
            taken = await shared.take(msg.name, identity, fingerprint, info, msg.labels,
                                      local_live=local is not None and local.conn is not None)
        if self.closed and not (taken is not None and taken.refusal is None):
            return None, enrolled
        reg = registry.register(msg.name, info, identity, msg.labels, fingerprint, self, taken=taken)
        if taken is not None and reg.refusal is None:
            self.services.ingest.resume(reg.machine.id, taken.cursor)
        if self.closed and reg.refusal is None:  # gone while the database decided: it left at once
            registry.disconnect(msg.name, self)
            return None, enrolled
        return reg, enrolled

    def _registered(self, msg: p.Hello, reg) -> None:
        self.name = msg.name
        self.protocol = tuple(msg.protocol)
        self.handler.machine = msg.name
        self.handler.settled()
        self.log = self.handler.log = contextual("centrality.agent",
                                                 f"agent={msg.name} conn={self.handler.id}")
        self.log.info("registered (%s) from %s%s", "continued" if reg.continued else "new",
                      self.handler.peer, self.handler.via)
        if self.handler.conn is not None:
            # Silence is the fleet's job from here (heartbeats; the session is
            # closed when the machine goes to limbo): no SSH keepalive timer
            # to re-arm on every packet.
            self.handler.conn.set_keepalive(0)
        # In a storm, an agent that can hold its metrics back does so for a while (holds.py).
        hold = self.services.holds.hold(self) if self.protocol >= p.METRICS_HOLD else 0.0
        self.send(p.Registered(machine_id=reg.machine.id, name=msg.name,
                               heartbeat_interval=self.services.registry.thresholds.heartbeat_interval,
                               continued=reg.continued, server_version=self.services.endpoint.version,
                               protocol=p.PROTOCOL_VERSION, metrics_hold=hold))

    # ------------------------------------------------------------------ steady state

    def _dispatch(self, frame: bytes) -> None:
        try:
            msg = p.agent_decoder.decode(frame)
        except UnknownKind as exc:
            self.send(p.Unsupported(unsupported_kind=exc.kind[:256],
                                    reason="this control plane does not know that message kind"))
            return
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
            return
        kind = type(msg)
        if kind is not p.MetricsBatch and needs_cleaning(kind):  # batches: in ingest.py
            clean(msg)
        handler = self._handlers.get(kind)
        if handler is None:  # a kind valid only in the other direction, e.g. a second hello
            self._fail("unexpected_kind", f"{msg.__struct_config__.tag} is not expected now")
            return
        handler(msg, frame)

    def _on_heartbeat(self, msg: p.Heartbeat, frame: bytes = b"") -> None:
        if not self.services.registry.heartbeat(self.name, self):
            self.close("heartbeat from a connection that no longer owns its machine")

    def _on_metrics(self, msg: p.MetricsBatch, frame: bytes) -> None:
        self._on_heartbeat(msg)  # a batch doubles as a heartbeat
        if self.closed:
            return
        if self.services.holds.held:
            self.services.holds.forget(self)  # it resumed on its own (or never held)
        machine = self.services.registry.machine(self.name)
        problem = self.services.ingest.received(self, self.name, machine.id, msg, frame)
        if problem:
            self._fail("malformed_frame", problem)

    def _on_command_message(self, msg: p.Message, frame: bytes = b"") -> None:
        """Output or exit of a run an operator started (routed to it by its id)."""
        self.services.commands.message(self.name, msg)

    def _on_health(self, msg: p.HealthReport, frame: bytes = b"") -> None:
        if self.services.registry.session(self.name) is self:  # not from a connection that lost its machine
            self.services.flags.health_report(self.name, msg)

    def _on_peer_error(self, msg: p.Error, frame: bytes = b"") -> None:
        self.log.warning("agent reported a protocol error: %s: %s", msg.code, msg.reason)
        self.close("agent reported an error")

    def _on_unsupported(self, msg: p.Unsupported, frame: bytes = b"") -> None:
        self.log.warning("agent does not support %r: %s", msg.unsupported_kind, msg.reason)

