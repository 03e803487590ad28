"""The control plane process: one object that owns everything it starts.

``ControlPlane.start()`` opens the store (and migrates it), loads the host key,
the keys and the fleet, and starts the SSH listener, the store writer and the
sweeper. ``stop()`` ends them in reverse order: no task, connection or thread
outlives it. ``serve()`` runs it until SIGINT or SIGTERM.

It is the one place that knows every part: each is built here with the few
collaborators it uses (nothing imports this module), and the agent sessions
and operator requests get theirs as a ``services`` bundle.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

import asyncssh
import msgspec

from centrality_core import __version__, contexts, paths, sshlink, sshpackets
from centrality_core.contexts import split_address
from centrality_core.errors import ConfigError, StoreError
from centrality_core.lifecycle import Thresholds
from centrality_core.settings import ServerSettings

from .admission import Admission
from .auth import Auth
from .compactor import Compactor
from .endpoint import Endpoint
from .flags import FlagKeeper
from .holds import MetricHolds
from .hooks import Hooks
from .ingest import Ingest
from .peering import Peers
from .proxylisten import ProxyListener
from .reads import MetricReads, ReadPool
from .registry import Registry
from .replica import Replica
from .router import CommandRouter
from .services import AgentServices, RequestServices
from .ssh import Connections
from . import proxyproto, readpause
from .store import Store, exclusive, replicas
from .store.chunks import Chunks
from .views import Changes
from .writer import StoreWriter

log = logging.getLogger("centrality.server")

HOST_KEY_FILE = "ssh_host_ed25519_key"
#: The key a replica logs in to its peers with (peering.py).
REPLICA_KEY_FILE = "replica_ed25519_key"
SAVE_HEARTBEATS_EVERY = 30.0
#: Often enough that ``ingest.ROLLUP_FLUSH_LIMIT`` a flush keeps up with 10,000 machines'
#: minutes closing together (and with a join's replayed ones).
ROLLUP_FLUSH_EVERY = 2.0
#: Seconds between looks at how late the event loop runs, at the metric holds that are due
#: (holds.py) and at whether agents' reads should pause for the others (readpause.py).
LOOP_TICK = 0.2
#: Held agents are released only while the oldest write waiting for the store has waited
#: less than this (seconds; the writer flushes every 0.1 s).
RELEASE_WRITE_BEHIND = 1.0
#: ... and while the event loop runs a timer less than this late (seconds).
RELEASE_LOOP_LAG = 0.1


#: Pending connections the kernel may queue (capped by net.core.somaxconn).
LISTEN_BACKLOG = 4096


class ControlPlane:
    def __init__(self, settings: ServerSettings, *, write_local_context: bool = True) -> None:
        self.settings = settings
        self.write_local_context = write_local_context
        self.thresholds = Thresholds(settings.heartbeat_interval, settings.limbo_after,
                                     settings.dead_after)
        #: Version, start time; host key fingerprint and addresses once started.
        self.endpoint = Endpoint(version=__version__, started_at=time.time())
        self.store = Store(settings.db_url())
        self.writer = StoreWriter(self.store)
        self.chunks = Chunks(self.store)
        self.reads = ReadPool()
        #: Metric history: compaction into chunks, retention per tier, the size bound (compactor.py).
        self.registry = Registry(self.thresholds, self.writer)
        self.compactor = Compactor(self.chunks, self.writer, settings,
                                   fleet_size=lambda: len(self.registry.records))
        self.metric_reads = MetricReads(self.store, self.chunks, self.reads.run)
        #: Connections to the other replicas on a shared Postgres (peering.py); none on SQLite.
        self.peers = Peers()
        self.auth = Auth(self.store, self.writer, self.reads.run, self.endpoint)
        #: Which machines' rows changed, for subscriptions (lifecycle events and new samples).
        self.changes = Changes()
        self.registry.add_listener(lambda events: [self.changes.touch(e.name) for e in events])
        self.registry.on_quiet_change = self.changes.touch
        self.ingest = Ingest(self.writer, on_sample=self.changes.touch, record_event=self.registry.record_event,
                             max_keys_per_batch=settings.max_keys_per_batch,
                             max_keys_per_machine=settings.max_keys_per_machine)
        #: Drained / unhealthy / operator labels (flags.py), runs in flight (router.py), hooks (hooks.py).
        self.flags = FlagKeeper(self.registry, auto_drain=settings.auto_drain)
        self.commands = CommandRouter()
        self.hooks = Hooks(settings.hooks)
        self.registry.add_listener(self.commands.on_lifecycle)
        self.registry.add_listener(self.hooks.on_lifecycle)
        #: Per-source connection rate, handshakes in progress, enrolling connections (admission.py).
        self.admission = Admission(rate=settings.connection_rate_per_source,
                                   burst=settings.connection_burst_per_source,
                                   max_enrolling=settings.max_enrolling_per_source)
        #: Agents that hold their metrics back while a storm of handshakes is on (holds.py).
        self.holds = MetricHolds(lambda: self.admission.handshakes, ready=self._release_ready)
        #: Registered agents' sockets not read for a moment while the loop is late (readpause.py).
        self.read_priority = readpause.ReadPriority()
        #: Every open client connection (ssh.py), and what its sessions are given.
        self.connections = Connections(
            auth=self.auth, admission=self.admission, login_grace=settings.login_grace,
            agent_services=AgentServices(
                registry=self.registry, auth=self.auth, ingest=self.ingest, flags=self.flags,
                commands=self.commands, endpoint=self.endpoint, holds=self.holds,
                max_frame_bytes=settings.max_frame_bytes),
            request_services=RequestServices(
                settings=settings, endpoint=self.endpoint, registry=self.registry, flags=self.flags,
                ingest=self.ingest, holds=self.holds, read_priority=self.read_priority,
                metric_reads=self.metric_reads, changes=self.changes, commands=self.commands,
                hooks=self.hooks, auth=self.auth, admission=self.admission, writer=self.writer,
                store=self.store, chunks=self.chunks, compactor=self.compactor, peers=self.peers,
                db=self.reads.run))
        #: This control plane among the replicas on a shared Postgres (replica.py); None on SQLite.
        self.replica_part: Replica | None = None
        self.host_key: asyncssh.SSHKey | None = None
        self.store_lock: exclusive.StoreLock | None = None  # SQLite: one control plane per file
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = False

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call in the read pool."""
        return await self.reads.run(fn, *args, **kwargs)

    @property
    def version(self) -> str:
        return self.endpoint.version

    @property
    def started_at(self) -> float:
        return self.endpoint.started_at

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the host key (empty until started)."""
        return self.endpoint.fingerprint

    @property
    def address(self) -> str:
        """Where it listens, HOST:PORT (port resolved; empty until started)."""
        return self.endpoint.address

    @property
    def advertise(self) -> str:
        """Where agents should connect (empty until started)."""
        return self.endpoint.advertise

    @property
    def replica(self) -> str:
        """Its name among replicas on Postgres (store/replicas.py); "" on SQLite."""
        return self.endpoint.replica

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        server_dir = paths.private_dir(self.settings.server_dir())
        self.store_lock = exclusive.claim(self.store.url, replica=self.settings.replica
                                          and replicas.check_name(self.settings.replica))
        await self.db(self.store.migrate)
        try:
            trusted_proxies = proxyproto.networks(self.settings.proxy_protocol_from)
        except ValueError as exc:
            raise ConfigError(f"proxy_protocol_from: {exc}") from None
        if self.settings.host_key:  # a replica set's one key, given to each replica
            self.host_key = sshlink.load_private_key(Path(self.settings.host_key).expanduser())
        else:
            self.host_key = _host_key(server_dir / HOST_KEY_FILE)
        self.endpoint.fingerprint = sshlink.fingerprint(self.host_key)
        await self.auth.load()
        held = {}
        if self.store.dialect == "postgresql":
            held = await self._start_replica()
        self.registry.load(await self.db(self.store.load_machines), held_elsewhere=held)
        self.hooks.active = True  # not for the restart's own limbo events
        self.ingest.load(await self.db(self.store.load_cursors))

        host, port = split_address(self.settings.listen)
        sshpackets.install()
        try:
            self._acceptor = await asyncssh.create_server(
                self.connections.new, host, port,
                server_host_keys=[self.host_key],
                encoding=None,
                line_editor=False,
                **sshlink.algorithms(),
                # Nothing but session channels: no agent, X11 or port forwarding
                # (the SSHServer refuses TCP/unix forwards by default).
                agent_forwarding=False, x11_forwarding=False, allow_scp=False,
                keepalive_interval=30, keepalive_count_max=3,
                gss_host=None,  # no GSSAPI: also spares a host-name lookup per authentication
                login_timeout=self.settings.login_grace,
                server_version=f"Centrality_{self.version}",
                # Accepts through proxylisten.py: the PROXY protocol header of
                # trusted load balancers is read before the SSH greeting. A whole
                # fleet reconnects at once after a restart: the kernel queues the
                # handshakes (LISTEN_BACKLOG) instead of resetting them.
                tunnel=ProxyListener(trusted_proxies, backlog=LISTEN_BACKLOG,
                                     refused=self.admission.refused),
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.settings.listen}: {exc.strerror or exc}") from None
        port = self._acceptor.sockets[0].getsockname()[1]
        self.endpoint.address = f"{_bracket(host)}:{port}"
        self.endpoint.advertise = self.settings.advertise or f"{_advertised_host(host)}:{port}"
        self._tasks = [asyncio.create_task(self.writer.run(), name="store-writer"),
                       asyncio.create_task(self._sweeper(), name="sweeper"),
                       asyncio.create_task(self.compactor.run(), name="history"),
                       asyncio.create_task(self._loop_watch(), name="loop-watch")]
        if self.replica_part is not None:
            self._tasks += self.replica_part.tasks()
        for task in self._tasks:
            task.add_done_callback(self._task_ended)
        if self.write_local_context:
            await self._bootstrap_local_operator(port, host)
        await self.writer.flush()
        log.info("listening on %s (host key %s), store %s", self.address, self.fingerprint, self.store.describe())

    def _task_ended(self, task: asyncio.Task) -> None:
        """A background task never ends before shutdown; one that does (a bug) is logged and
        reported by ``status`` rather than gone in silence."""
        if task.cancelled() or self._stopped:
            return
        exc = task.exception()
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "returned"
        self.endpoint.failed_tasks[task.get_name()] = why[:500]
        log.critical("background task %s ended (%s): what it does has stopped; restart the control plane",
                     task.get_name(), why, exc_info=exc)

    async def _start_replica(self) -> dict[str, str]:
        """Begin this replica's lease; the machines other replicas hold (id -> replica)."""
        s = self.settings
        if not 0 < s.replica_renew_interval < s.replica_lease:
            raise ConfigError(f"replica-renew-interval ({s.replica_renew_interval:g}s) must be positive and "
                              f"shorter than replica-lease ({s.replica_lease:g}s)")
        host, port = split_address(s.listen)
        if port == 0:  # the name needs the port before the listener exists: reserve one
            port = _free_port(host)
            self.settings = s = msgspec.structs.replace(s, listen=f"{_bracket(host)}:{port}")
        self.endpoint.replica = s.replica or replicas.default_name(port)
        peer_key = _host_key(paths.private_dir(self.settings.server_dir()) / REPLICA_KEY_FILE)
        self.peers.join(peer_key, self.endpoint.replica)
        self.replica_part = Replica(
            self.store, self.registry, self.auth, self.reads.run, self.peers,
            name=self.endpoint.replica, address=s.peer_address or f"{_advertised_host(host)}:{port}",
            identity={"host_fingerprint": self.endpoint.fingerprint,
                      "peer_key": peer_key.export_public_key().decode().strip(),
                      "peer_fingerprint": sshlink.fingerprint(peer_key)},
            lease=s.replica_lease, renew_every=s.replica_renew_interval, close_agents=self._close_agents)
        await self.replica_part.start()
        self.auth.shared = True
        return self.replica_part.held_elsewhere(await self.db(replicas.holdings, self.store))

    def _close_agents(self, reason: str) -> None:
        for handler in self.connections:
            if handler.role in ("agent", "enrolling"):
                handler.close(reason)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._acceptor is not None:
            self._acceptor.close()
        self.connections.close_all("control plane shutting down")
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
        if self.commands.runs:  # let running execs record their end (audit) before the last flush
            self.commands.cancel_all("control plane shutting down")
            await asyncio.sleep(0.05)
        await self.hooks.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.writer.flush()
        except StoreError as exc:
            log.error("could not write %d pending changes at shutdown: %s", self.writer.backlog, exc)
        if self.replica_part is not None:
            await self.replica_part.stop()
        await self.peers.close()
        self.writer.close()
        self.reads.close()
        self.store.close()
        if self.store_lock is not None:
            self.store_lock.release()

    async def _sweeper(self) -> None:
        """One timer for the fleet: liveness every tick, then the slower chores."""
        every = min(1.0, self.thresholds.limbo_after / 5)
        chores = [(SAVE_HEARTBEATS_EVERY, self.registry.save_heartbeats),
                  (ROLLUP_FLUSH_EVERY, self.ingest.flush_rollups),
                  (self.settings.retention_interval, self._retention)]
        last = [time.monotonic()] * len(chores)
        while True:
            await asyncio.sleep(every)
            self.registry.sweep()
            for i, (period, chore) in enumerate(chores):
                if time.monotonic() - last[i] >= period:
                    last[i] = time.monotonic()
                    result = chore()
                    if asyncio.iscoroutine(result):
                        await result

    async def _loop_watch(self) -> None:
        """A few times a second: how late the event loop runs; end the metric holds that are
        due (holds.py); when late, make room for operators and handshakes (readpause.py)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(LOOP_TICK)
            lag = loop.time() - t - LOOP_TICK
            try:
                for session in self.holds.due():
                    session.resume_metrics()
                pause = self.read_priority.pause_for(lag, self._not_agents)
                if pause:
                    with readpause.paused(h.conn for h in self.connections if h.machine is not None) as n:
                        log.debug("event loop %.2fs late: %d agents not read for %gs", lag, n, pause)
                        await asyncio.sleep(pause)
            except Exception:  # noqa: BLE001 - a bug here must not end the releases for good
                log.exception("loop watch: unexpected error (going on)")

    def _not_agents(self) -> int:
        """Open connections that are not registered agents: operators, replicas, handshakes."""
        return sum(h.machine is None for h in self.connections.open)

    def _release_ready(self) -> bool:
        """May held agents send their backlogs now? Only while the store writer keeps up and
        the event loop answers in time (an operator's request must not wait behind backlogs)."""
        return self.writer.behind < RELEASE_WRITE_BEHIND and self.read_priority.lag < RELEASE_LOOP_LAG

    async def _retention(self) -> None:
        s = self.settings
        removed = self.registry.remove_expired(s.dead_retention)
        if removed:
            log.info("retention: removed %d machine(s) dead for more than %gs", len(removed), s.dead_retention)
        try:
            deleted = await self.db(self.store.apply_retention, time.time(), raw=s.raw_retention,
                                    rollups=s.rollup_retention, events=s.event_retention,
                                    audit=s.audit_retention)
        except StoreError as exc:
            log.warning("retention sweep failed: %s", exc.reason)
            return
        if any(deleted.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in deleted.items() if n))

    # ------------------------------------------------------------------ first start

    async def _bootstrap_local_operator(self, port: int, host: str) -> None:
        """Give the user who runs the server an operator key and a ``local`` context."""
        key_path = paths.config_dir() / "keys" / "operator_ed25519"
        key = sshlink.load_private_key(key_path) if key_path.exists() else sshlink.generate_key(key_path)
        fp = sshlink.fingerprint(key)
        if fp not in self.auth.keys:
            name = f"{getpass.getuser()}@{socket.gethostname()}"
            await self.auth.add_key(name=name, role="operator",
                                    public_key=key.export_public_key().decode(), actor="server:bootstrap")
            log.info("created operator key %s for %s", fp, name)
        local = f"{_bracket(_local_host(host))}:{port}"
        pinned = contexts.load().contexts.get("local")
        if pinned is not None and pinned.fingerprint != self.fingerprint:
            # Never re-pin silently: a changed host key is what pinning exists to notice.
            log.warning("the `local` context pins host key %s, but this control plane's host key is %s; "
                        "left as it is, so clients using it refuse to connect (exit 5). If the host key "
                        "changed on purpose (a new data directory), pin the new one: "
                        "centrality login %s --fingerprint %s --name local",
                        pinned.fingerprint, self.fingerprint, local, self.fingerprint)
            return
        contexts.put("local", contexts.Context(address=local, fingerprint=self.fingerprint,
                                               key=str(key_path)))


def _host_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return sshlink.load_private_key(path)
    log.info("generating host key %s", path)
    return sshlink.generate_key(path)


def _free_port(host: str) -> int:
    """A TCP port free on ``host`` now (a replica's default name includes its port)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host or "", 0))
        return sock.getsockname()[1]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _local_host(host: str) -> str:
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _advertised_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return _bracket(socket.getfqdn())
    return _bracket(host)


async def serve(settings: ServerSettings, *, ready: Callable[[ControlPlane], None] | None = None) -> None:
    """Run a control plane until SIGINT/SIGTERM, then stop it cleanly."""
    cp = ControlPlane(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cp.start()
        if ready:
            ready(cp)
        await stop.wait()
        log.info("stopping")
    finally:
        await cp.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
