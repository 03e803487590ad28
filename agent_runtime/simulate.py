"""Simulated fleets: many agents in one process, each a real one.

Every simulated machine is an ``Agent`` from ``link.py`` — its own SSH
connection, its own enrolled key, registration, heartbeats, reconnect
backoff, outbox and replay — with fake collectors (``collectors/simulated.py``)
instead of real ones. The only thing shared is the clock: one timer samples
every machine, one forms every machine's batches, one runs every machine's
health round, spread over the interval, and one waiter ends every connection
on stop, instead of tasks and timers per machine, which is what lets thousands
fit on a small box.

Keys are kept in a state directory, so a second run reuses the enrolled keys
and needs no join token.

Commands sent to a simulated machine run on this host, through the agent's
own executor; ``simshell`` makes ``hostname``, ``uname`` and ``nvidia-smi``
answer as the simulated machine.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from centrality_core import __version__, joinstring, paths
from centrality_core.aio import within
from centrality_core.backoff import Backoff
from centrality_core.errors import CentralityError, ConfigError

from .collectors import make_collectors
from .config import AgentConfig
from .link import Agent
from .sampler import Sampler
from .simshell import SimShell

log = logging.getLogger("centrality.simulate")

PROFILES = ("cpu", "gpu8", "mixed")


def profile_of(profile: str, index: int) -> str:
    """``mixed``: one machine in four is an 8-GPU node."""
    if profile == "mixed":
        return "gpu8" if index % 4 == 0 else "cpu"
    return profile


def _files_root(root: str, name: str) -> str:
    if not root:
        return ""
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@dataclass
class FleetSpec:
    count: int
    start: int = 1
    profile: str = "mixed"
    prefix: str = "sim-"
    seed: int = 0
    ramp: float = 0.0  # seconds over which connections start (jitter)
    sample_interval: float = 1.0
    batch_interval: float = 5.0
    #: Each machine's ``files_root`` is ``files_root/<name>`` (``cp`` to simulated machines); empty: /.
    files_root: str = ""
    #: SSH handshakes this process has in flight at most. The client's side of a handshake costs
    #: about as much CPU as the control plane's: thousands at once on the same cores would each
    #: outlast the login timeout and start over.
    handshakes: int = 64


class StateDir:
    """Address, pinned fingerprint, keys and who is enrolled, kept between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys = path / "keys"

    def target(self, join: str | None) -> tuple[str, str, str]:
        """(address, fingerprint, token) from the join string, else from a previous run."""
        target = self.path / "target"
        if join:
            js = joinstring.decode(join)
            address, fingerprint = ",".join(js.addresses), ",".join(js.fingerprints)  # a replica set: all
            paths.write_private(target, f"{address}\n{fingerprint}\n".encode())
            return address, fingerprint, js.t
        try:
            address, fingerprint = target.read_text().split()
        except (FileNotFoundError, ValueError):
            raise ConfigError(f"no previous simulation in {self.path}: pass --join JOIN_STRING "
                              "(from `centrality token create --uses N`)") from None
        return address, fingerprint, ""

    def key(self, name: str) -> asyncssh.SSHKey:
        path = self.keys / name
        if path.exists():
            return asyncssh.import_private_key(path.read_bytes())
        key = asyncssh.generate_private_key("ssh-ed25519")
        paths.write_private(path, key.export_private_key())
        return key

    def enrolled(self, name: str) -> bool:
        return (self.keys / f"{name}.enrolled").exists()

    def mark_enrolled(self, name: str) -> None:
        (self.keys / f"{name}.enrolled").touch()


class SimulatedFleet:
    def __init__(self, spec: FleetSpec, state: StateDir, join: str | None = None) -> None:
        self.spec = spec
        self.state = state
        self.address, self.fingerprint, self.token = state.target(join)
        self.agents: list[Agent] = []
        self.failed: dict[str, str] = {}
        #: Reconnect jitter for every machine: one generator, not one each (2.5 KB a machine).
        self.jitter = random.Random(f"jitter:{spec.seed}")
        self.handshakes = asyncio.Semaphore(spec.handshakes)

    def build(self) -> None:
        for index in range(self.spec.start, self.spec.start + self.spec.count):
            self.agents.append(self._agent(index))

    def _agent(self, index: int) -> Agent:
        s = self.spec
        name = f"{s.prefix}{index:05d}"
        enrolled = self.state.enrolled(name)
        if not enrolled and not self.token:
            raise ConfigError(f"{name} is not enrolled yet: pass --join JOIN_STRING")
        cfg = AgentConfig(address=self.address, fingerprint=self.fingerprint, name=name,
                          join_token="" if enrolled else self.token, profile=profile_of(s.profile, index),
                          sample_interval=s.sample_interval, batch_interval=s.batch_interval,
                          labels={"sim": "true", "profile": profile_of(s.profile, index)},
                          files_root=_files_root(s.files_root, name))
        collectors = make_collectors(cfg.profile, index=index, seed=s.seed)
        info = collectors.machine_info()
        info["agent_version"] = __version__
        agent = Agent(cfg, self.state.key(name), info=info, name=name,
                      sampler=Sampler(collectors, s.sample_interval, blocking=False),
                      backoff=Backoff(initial=1.0, maximum=30.0, rng=self.jitter),
                      on_registered=lambda msg, name=name: self.state.mark_enrolled(name))
        agent.own_timers = False
        agent.handshakes = self.handshakes
        # Commands run on this host, but hostname, uname and nvidia-smi answer as this machine.
        agent.exec_env = SimShell(self.state.path / "shell", name, info,
                                  screen=_screen_of(collectors, agent) if cfg.profile == "gpu8" else None).environment
        return agent

    @property
    def live(self) -> int:
        return sum(a.state.registered for a in self.agents)

    def totals(self) -> dict[str, int]:
        """Samples taken = acknowledged (stored) + still pending + dropped."""
        return {
            "agents": len(self.agents),
            "live": self.live,
            "stopped": len(self.failed),
            "samples_taken": sum(a.sampler.taken for a in self.agents),
            "samples_acked": sum(a.outbox.acked_samples for a in self.agents),
            "samples_pending": sum(a.sampler.pending + a.outbox.samples for a in self.agents),
            "samples_dropped": sum(a.outbox.dropped_total for a in self.agents),
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Run every agent until ``stop``; returns when all have ended."""
        if not self.agents:
            self.build()
        rng = random.Random(self.spec.seed)
        tasks = [asyncio.ensure_future(self._run_one(a, stop, rng.uniform(0, self.spec.ramp)))
                 for a in self.agents]
        timers = [asyncio.ensure_future(self._every(self.spec.sample_interval, self._sample)),
                  asyncio.ensure_future(self._every(self.spec.batch_interval, Agent.flush_batch)),
                  asyncio.ensure_future(self._close_on(stop))]
        health = self.agents[0].health if self.agents else None
        if health is not None and health.enabled:
            # Spread over a batch interval, not the health interval (a minute): every machine's
            # first report comes within seconds, as an agent's own first round does.
            timers.append(asyncio.ensure_future(self._every(health.cfg.health_interval, self._health,
                                                            first=health.first_delay,
                                                            spread=self.spec.batch_interval)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in timers:
                t.cancel()
            await asyncio.gather(*timers, return_exceptions=True)

    async def _run_one(self, agent: Agent, stop: asyncio.Event, delay: float) -> None:
        try:
            await within(stop.wait(), delay)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await agent.run(stop)
        except CentralityError as exc:
            self.failed[agent.name] = exc.reason
            log.error("%s stopped: %s", agent.name, exc.reason)
        except Exception as exc:  # noqa: BLE001 - one machine's bug must not stop thousands
            self.failed[agent.name] = f"{type(exc).__name__}: {exc}"
            log.exception("%s stopped", agent.name)

    async def _close_on(self, stop: asyncio.Event) -> None:
        """Once ``stop`` is set, end every machine's connection (what an agent with its own
        timers does itself): one waiter for the fleet, not one per machine."""
        await stop.wait()
        for agent in self.agents:
            agent.close()

    @staticmethod
    def _sample(agent: Agent) -> None:
        agent.sampler.sample(time.time())

    @staticmethod
    def _health(agent: Agent) -> None:
        agent.health.tick()

    async def _every(self, interval: float, fn, first: float = 0.0, spread: float | None = None) -> None:
        """Call ``fn(agent)`` for every agent once per interval, spread in 10 slices over
        ``spread`` seconds (the interval), the first time after ``first`` seconds."""
        await asyncio.sleep(first)
        slices, spread = 10, min(interval, spread or interval)
        while True:
            started = time.monotonic()
            n = len(self.agents)
            for k in range(slices):
                for agent in self.agents[k * n // slices:(k + 1) * n // slices]:
                    try:
                        fn(agent)
                    except Exception:  # noqa: BLE001 - one broken fake must not stop the rest
                        log.exception("%s: %s failed", agent.name, getattr(fn, "__name__", fn))
                target = started + spread * (k + 1) / slices
                await asyncio.sleep(max(0.0, target - time.monotonic()))
            await asyncio.sleep(max(0.0, started + interval - time.monotonic()))


def _screen_of(collectors, agent: Agent):
    """The nvidia-smi screen of a simulated GPU machine now, from its latest sample."""

    def screen() -> str:
        now = time.time()
        try:
            return collectors.screen(now, agent.sampler.latest or None)
        except KeyError:  # no sample yet, or one without every GPU key
            return collectors.screen(now)

    return screen
