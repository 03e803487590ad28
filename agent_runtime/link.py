"""The agent's link to the control plane: connect, register, heartbeat, reconnect.

``Agent.run()`` keeps one SSH connection open for as long as it runs. Each
connection: authenticate with the agent's own key (pinning the control
plane's host key), open the ``centrality-agent`` subsystem, send ``hello``,
wait for ``registered``, then send a heartbeat every interval the control
plane asked for, until the connection ends or the agent stops. Transient
failures reconnect with jittered exponential backoff; refusals that another
try cannot fix (different specs under a name in limbo, a revoked key, a
wrong host key, a bad token) stop the agent with the reason.

A control plane of several replicas has several addresses (``address`` in
agent.toml is a comma-separated list): each attempt tries them in turn,
starting with the one that last answered (at first, one chosen by the
machine's name, so that a fleet spreads over the replicas), and backs off only when none did.
Moving to another replica continues the same machine: same key and name, and
the same outbox and batch sequence, so what the dead replica did not
acknowledge is replayed to the next one. A wrong host key or a refused key
stops the agent only when every address said so (one replica's answer is not
the replica set's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import asyncssh
import msgspec

from centrality_core import endpoints
from centrality_core import protocol as p
from centrality_core import sshlink
from centrality_core.aio import within
from centrality_core.sanitize import for_log
from centrality_core.errors import (
    AuthRefused, Busy, ConnectError, HostKeyMismatch, ProtocolError, RegistrationRefused, UnknownKind,
)

from . import config as agent_config
from centrality_core.backoff import Backoff
from .executor import Executor
from .health import HealthMonitor
from .sampler import Outbox, Sampler
from .shell import Shells

log = logging.getLogger("centrality.agent")

#: Refusals that retrying cannot fix: the agent stops with the reason.
FATAL_CODES = {"specs_differ", "name_in_use", "name_owned", "invalid_name", "unsupported_version",
               "token_invalid", "token_expired", "token_used", "token_revoked", "not_enrolled"}
#: Seconds to wait for the answer to a hello. Long on purpose, as CONNECT_TIMEOUT: in a join
#: storm the control plane's store answers enrolments in turn, and giving up only makes the
#: agent redo its handshake.
REGISTER_TIMEOUT = 120.0
CONNECT_TIMEOUT = 60.0
#: A hold the control plane asked for ends this long after its time even without
#: ``metrics_resume`` (which the control plane sends by then: it paces the releases).
HOLD_SLACK = 5.0


@dataclass
class LinkState:
    """What the agent knows of its link, for status output and tests."""

    registered: bool = False
    machine_id: str = ""
    heartbeat_interval: float = 5.0
    connects: int = 0
    registrations: int = 0
    #: The control-plane address of the current (or last) connection.
    address: str = ""
    last_error: str = ""
    heartbeats: int = 0
    batches_sent: int = 0
    #: Batches the control plane acknowledged without storing them, and why (the last reason).
    batches_refused: int = 0
    last_refusal: str = ""
    #: Samples it did not store for being too old or too far ahead of its clock.
    samples_too_old: int = 0
    #: Registrations after which the control plane asked it to hold its metrics (a storm).
    holds: int = 0


class Agent:
    _handlers: dict[type, Callable[[Agent, Any], None]]  # set below the class

    def __init__(self, cfg: agent_config.AgentConfig, key, *, info: dict, name: str,
                 sampler: Sampler | None = None, config_dir: Path | None = None,
                 backoff: Backoff | None = None,
                 on_registered: Callable[[p.Registered], None] | None = None,
                 probe_gpus: bool = False) -> None:
        self.cfg = cfg
        self.key = key
        self.info = msgspec.convert(info, p.MachineInfo)
        self.name = name
        self.sampler = sampler
        self.outbox = Outbox(cfg.buffer_max_samples, cfg.buffer_max_age)
        #: Batches go out packed (protocol 1.1) once a control plane said it reads them.
        self.packed = False
        #: Batches carry ``gpu_processes`` (protocol 1.2) once a control plane said it reads them.
        self.gpu_processes = False
        #: Names this run of the agent in metric batches (sequence numbers restart with it).
        self.stream = secrets.token_hex(8)
        self.config_dir = config_dir
        self.backoff = backoff or Backoff()
        #: The control plane's addresses, in the order the next attempt tries them.
        self.rotation = endpoints.Rotation(endpoints.split(cfg.address) or [cfg.address], spread=name)
        self.state = LinkState()
        self.on_registered = on_registered
        #: False when a simulator drives sampling and batching from one shared timer.
        self.own_timers = True
        #: Healthchecks; ``probe_gpus`` (real machines) adds nvidia-smi and NVML checks.
        self.health = HealthMonitor(cfg, values=lambda: self.sampler.latest if self.sampler else {},
                                    registered_gpus=len(self.info.gpus), probe_gpus=probe_gpus,
                                    on_report=self._send_health)
        self._executor: Executor | None = None  # commands of the current connection
        self._shells: Shells | None = None  # shell sessions of the current connection
        self._files = None  # file transfers of the current connection (files.Transfers)
        self.exec_env = None  # adds to each command's environment (a simulated machine's shell)
        #: Shared by a simulator's machines: at most so many SSH handshakes of theirs at once, so
        #: that thousands started together do not each take longer than the timeout on its cores.
        self.handshakes: asyncio.Semaphore | None = None
        self._conn = None
        self._writer = None  # the channel while registered
        #: While the control plane has this agent hold its metrics (protocol 1.4): the timer
        #: that ends the hold if ``metrics_resume`` does not come first.
        self._hold: asyncio.TimerHandle | None = None
        self._seq = 0
        self._last_sent = 0.0

    # ------------------------------------------------------------------ outer loop

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set. Raises on a fatal refusal.

        Sampling and batching go on while disconnected; batches wait in the
        outbox and are replayed on the next connection. With ``own_timers`` False
        the owner (a simulator) drives sampling, batching and health rounds from its
        shared timers and calls ``close()`` when ``stop`` is set.
        """
        background = []
        if self.own_timers:
            if self.sampler is not None:
                background = [asyncio.ensure_future(self.sampler.run()),
                              asyncio.ensure_future(self._batcher())]
            if self.health.enabled:
                background.append(asyncio.ensure_future(self.health.run()))
            stopper = asyncio.ensure_future(stop.wait())  # ends the connection (and so the session)
            stopper.add_done_callback(lambda _: self.close())
            background.append(stopper)
        try:
            await self._stay_connected(stop)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _stay_connected(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            told: float | None = None  # when a busy control plane said to come back
            try:
                await self._connect_once(stop)
                if stop.is_set():
                    return
                self.state.last_error = "connection closed by the control plane"
            except (HostKeyMismatch, AuthRefused):
                raise
            except RegistrationRefused as exc:
                if exc.code in FATAL_CODES:
                    raise
                self.state.last_error = f"{exc.code}: {exc.reason}"
            except (ConnectError, ProtocolError, OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
                # asyncssh.Error: e.g. the session channel refused because the
                # control plane went away between authentication and open.
                self.state.last_error = str(exc) or type(exc).__name__
                if isinstance(exc, Busy):
                    told = exc.retry_after
            finally:
                self.state.registered = False
            if stop.is_set():  # the connection ended because the agent stops: no retry, no warning
                return
            delay = retry_delay(self.backoff, told)
            log.warning("%s; reconnecting in %.1fs", self.state.last_error, delay)
            try:
                await within(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # ------------------------------------------------------------------ one connection

    async def _connect_once(self, stop: asyncio.Event) -> None:
        enrolling = bool(self.cfg.join_token)
        self.state.connects += 1
        # A long timeout on purpose: in a reconnect storm the control plane answers
        # handshakes in turn, and giving up early only makes it redo the work.
        async with self.handshakes or contextlib.nullcontext():
            conn, address = await sshlink.connect_any(self.rotation.round(), self.cfg.fingerprint, self.key,
                                                      username=p.ENROLL_USER if enrolling else "agent",
                                                      timeout=CONNECT_TIMEOUT)
        if address != self.state.address:
            if self.state.address:
                log.info("connected to %s (was %s)", address, self.state.address)
            self.rotation.worked(address)
            self.state.address = address
        self._conn = conn
        try:
            writer, reader, _ = await conn.open_session(subsystem=p.AGENT_SUBSYSTEM, encoding=None)
            frames = p.StreamFrames(reader)
            hello = p.Hello(protocol=p.PROTOCOL_VERSION, name=self.name, info=self.info,
                            labels=self.cfg.labels, join_token=self.cfg.join_token or None)
            writer.write(p.encode(hello))
            first = await within(self._next(frames), REGISTER_TIMEOUT)
            if isinstance(first, p.Rejected):
                raise RegistrationRefused(first.reason, code=first.code)
            if not isinstance(first, p.Registered):
                raise ProtocolError(f"expected registered, got {first.__struct_config__.tag}")
            self._registered(first, enrolling)
            self._writer = writer
            if first.metrics_hold > 0:  # a storm: the control plane's handshakes come first
                self._hold_metrics(first.metrics_hold)
            else:
                self._replay(writer)
            send = functools.partial(self._send_quiet, writer)  # one callable for the three
            self._executor = Executor(send,
                                      max_running=self.cfg.exec_max_running, kill_grace=self.cfg.kill_grace,
                                      machine=self.name, run_as=self.cfg.run_as, environment=self.exec_env)
            self._shells = Shells(send, run_as=self.cfg.run_as,
                                  machine=self.name, kill_grace=self.cfg.kill_grace)
            self._files = self._new_transfers(writer, send)
            if self.health.last is not None:
                self._send_quiet(writer, self.health.last)
            await self._session(writer, frames, stop)
        finally:
            self._writer = None
            if self._hold is not None:
                self._hold.cancel()
                self._hold = None
            if self._shells is not None:  # sessions end with the connection they came on
                shells, self._shells = self._shells, None
                await shells.close()
            if self._files is not None:
                files, self._files = self._files, None
                files.close()
            if self._executor is not None:  # commands end with the connection they came on
                executor, self._executor = self._executor, None
                await executor.close()
            self._conn = None
            conn.close()
            await conn.wait_closed()

    def _replay(self, writer) -> None:
        """Send what was not acknowledged, oldest first, what was never sent merged into a few
        batches. (A method of its own: a loop variable in ``_connect_once`` would keep the last
        batch alive for as long as the connection.)"""
        self.outbox.merge_unsent()
        for batch in self.outbox:
            self._send(writer, self._for_peer(batch))

    def _hold_metrics(self, seconds: float) -> None:
        """Send no batch (they wait in the outbox) until ``metrics_resume``, or ``seconds``."""
        self.state.holds += 1
        log.info("control plane busy with a reconnect storm: holding metrics for up to %gs", seconds)
        self._hold = asyncio.get_running_loop().call_later(seconds + HOLD_SLACK, self._resume_metrics)

    def _resume_metrics(self, msg: p.MetricsResume | None = None) -> None:
        """The hold is over: send the backlog (merged), and each batch from now on."""
        if self._hold is None:
            return
        self._hold.cancel()
        self._hold = None
        if self._writer is not None:
            try:
                self._replay(self._writer)
            except (OSError, asyncssh.Error):
                pass  # the link is going down; the batches are replayed on the next one

    def _for_peer(self, batch: p.MetricsBatch) -> p.MetricsBatch:
        """``batch`` with only what the control plane reads (1.0: JSON columns; <1.2: no processes)."""
        if batch.gpu_processes is not None and not self.gpu_processes:
            batch = msgspec.structs.replace(batch, gpu_processes=None)
        return batch if self.packed else batch.unpacked()

    def _registered(self, msg: p.Registered, enrolled_now: bool) -> None:
        s = self.state
        s.registered, s.machine_id, s.heartbeat_interval = True, msg.machine_id, msg.heartbeat_interval
        s.registrations += 1
        self.packed = tuple(msg.protocol) >= (1, 1)  # the control plane reads packed metric values
        self.gpu_processes = tuple(msg.protocol) >= (1, 2)  # ... and GPU process lists
        self.backoff.reset()
        log.info("registered as %s (%s)", msg.name, "continued" if msg.continued else "new machine")
        if enrolled_now:
            self.cfg.join_token = ""  # presented once; never again
            if self.config_dir is not None:
                agent_config.save(self.config_dir, self.cfg)
        if self.on_registered:
            self.on_registered(msg)

    def _not_stored(self, ack: p.MetricsAck) -> None:
        s = self.state
        s.samples_too_old += ack.too_old
        if ack.too_old:
            log.warning("control plane did not store %d samples of batch %d: outside its time window "
                        "(is this machine's clock right?)", ack.too_old, ack.seq)
        if ack.refused:
            s.batches_refused += 1
            if ack.refused != s.last_refusal:  # once per reason, not once per batch
                log.warning("control plane refused metric batch %d: %s", ack.seq,
                            for_log(ack.refused[:500]))
            s.last_refusal = ack.refused

    def _send(self, writer, msg: p.Message) -> None:
        if isinstance(msg, p.MetricsBatch):
            self.outbox.mark_sent(msg)  # before the write: a part of it may reach the control plane
            self.state.batches_sent += 1
        writer.write(p.encode(msg))
        self._last_sent = time.monotonic()

    def _send_quiet(self, writer, msg: p.Message) -> None:
        """Send a message that is not a heartbeat (command output, health) if the link is up."""
        try:
            writer.write(p.encode(msg))
        except (OSError, asyncssh.Error):
            pass  # the link is going down

    def _send_health(self, report: p.HealthReport) -> None:
        if self._writer is not None:
            self._send_quiet(self._writer, report)

    async def _batcher(self) -> None:
        """Every batch interval: pending samples become a batch, sent if connected."""
        while True:
            await asyncio.sleep(self.cfg.batch_interval)
            self.flush_batch()

    def flush_batch(self) -> None:
        """Turn pending samples into a batch: into the outbox, and out now if connected."""
        # Packed in the outbox whatever the peer (8 bytes a value while it waits for an ack, or
        # for a connection); ``_for_peer`` unpacks it for a 1.0 control plane.
        batch = self.sampler.take_batch(self.stream, self._seq + 1, packed=True)
        if batch is None:
            return
        self._seq += 1
        self.outbox.add(batch)
        if self._writer is not None and self._hold is None:
            try:
                self._send(self._writer, self._for_peer(batch))
            except (OSError, asyncssh.Error):
                pass  # the link is going down; the batch is replayed on the next one

    async def _session(self, writer, frames: p.StreamFrames, stop: asyncio.Event) -> None:
        """Receive until the connection ends or ``stop`` is set, heartbeating whenever nothing
        else was sent for a heartbeat interval. Heartbeats come from a timer callback: a task
        woken every interval costs a simulator of thousands of agents a share of its core."""
        if stop.is_set():  # set during the handshake or registration
            return
        receiver = asyncio.ensure_future(self._receive(frames))
        stopper = asyncio.ensure_future(stop.wait())
        beat = _Beat(self, writer, receiver)
        try:
            done, _ = await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if beat.error is not None:
                raise beat.error  # sending a heartbeat failed: the link is going down
            if receiver in done:
                receiver.result()  # raises what ended the connection
        finally:
            beat.cancel()
            for t in (receiver, stopper):
                t.cancel()
            await asyncio.gather(receiver, stopper, return_exceptions=True)

    def _heartbeat(self, writer) -> None:
        self.state.heartbeats += 1
        try:
            self._send(writer, p.Heartbeat(seq=self.state.heartbeats, ts=time.time()))
        except (OSError, asyncssh.Error):
            raise  # the link is going down: the session ends with it
        except Exception as exc:  # a bug must not leave a live link without heartbeats
            log.exception("sending a heartbeat failed; reconnecting")
            raise ConnectError(f"sending a heartbeat failed: {exc}") from None

    def _new_transfers(self, writer, send):
        from .files import Transfers

        return Transfers(send, run_as=self.cfg.run_as,
                         root=self.cfg.files_root, buffered=lambda: _buffered(writer))

    async def _receive(self, frames: p.StreamFrames) -> None:
        while True:
            try:
                msg = await self._next(frames)
            except UnknownKind as exc:  # from a newer control plane: say so, keep the link
                if self._writer is not None:
                    self._send_quiet(self._writer, p.Unsupported(
                        unsupported_kind=exc.kind[:256], reason="this agent does not know that message kind"))
                continue
            handler = self._handlers.get(type(msg))
            if handler is not None:
                handler(self, msg)

    def _on_ack(self, msg: p.MetricsAck) -> None:
        self.outbox.ack(msg.stream, msg.seq)
        if msg.refused or msg.too_old:
            self._not_stored(msg)

    def _on_error(self, msg: p.Error) -> None:
        raise ProtocolError(f"control plane closed the link: {msg.code}: {msg.reason}")

    def _on_unsupported(self, msg: p.Unsupported) -> None:
        log.warning("control plane does not support %r", msg.unsupported_kind)

    def _on_command(self, msg: p.Command) -> None:
        if self._executor is not None:
            self._executor.start(msg)

    def _on_cancel(self, msg: p.Cancel) -> None:
        """A run's id: a shell session's (which a command may share), a transfer's, or a command's."""
        if self._shells is not None and self._shells.handle(msg):
            pass
        elif self._files is not None and self._files.handle(msg):
            return
        if self._executor is not None:
            self._executor.cancel(msg.id)

    def _on_shell(self, msg: p.Message) -> None:
        if self._shells is not None:
            self._shells.handle(msg)

    def _on_file(self, msg: p.Message) -> None:
        if self._files is not None:
            self._files.handle(msg)

    async def _next(self, frames: p.StreamFrames) -> p.Message:
        frame = await frames.next()
        if frame is None:
            raise ConnectError("connection closed by the control plane")
        return p.server_decoder.decode(frame)


def retry_delay(backoff: Backoff, told: float | None) -> float:
    """How long to wait before the next attempt: what a busy control plane said (it
    paces a storm by its own handshake rate: ``control_plane/pacing.py``), else the
    jittered backoff. Being told does not grow the backoff: the control plane was up."""
    if told is not None:
        return told
    return backoff.next()


#: What the control plane sends, by message type (as the control plane dispatches what agents
#: send); kinds not listed are ignored. One table for every agent (a simulator runs thousands).
Agent._handlers = {
    p.MetricsAck: Agent._on_ack,
    p.MetricsResume: Agent._resume_metrics,
    p.Error: Agent._on_error,
    p.Unsupported: Agent._on_unsupported,
    p.Command: Agent._on_command,
    p.Cancel: Agent._on_cancel,
    **dict.fromkeys((p.ShellOpen, p.ShellInput, p.ShellResize, p.ShellAck), Agent._on_shell),
    **dict.fromkeys((p.FilePut, p.FileGet, p.FileChunk, p.FileAck), Agent._on_file),
}


def _buffered(writer) -> int:
    """Bytes written to the link but not yet sent (the SSH window is full)."""
    try:
        return writer.channel.get_write_buffer_size()
    except (AttributeError, OSError):
        return 0


class _Beat:
    """A session's heartbeat timer: sends one when nothing else went out for ~an interval,
    then looks again when the next would be due. A send that fails ends the session (it
    cancels the receiver; the session raises ``error``)."""

    def __init__(self, agent: Agent, writer, receiver: asyncio.Future) -> None:
        self.agent, self.writer, self.receiver = agent, writer, receiver
        self.error: BaseException | None = None
        self._handle: asyncio.TimerHandle | None = None
        self()

    def __call__(self) -> None:
        interval = self.agent.state.heartbeat_interval
        idle = time.monotonic() - self.agent._last_sent
        if idle >= interval * 0.9:
            try:
                self.agent._heartbeat(self.writer)
            except Exception as exc:  # noqa: BLE001 - handed to the session, which raises it
                self.error, self._handle = exc, None
                self.receiver.cancel()
                return
            idle = 0.0
        self._handle = asyncio.get_running_loop().call_later(interval - idle, self)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
