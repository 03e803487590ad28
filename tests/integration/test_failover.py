"""Agent failover between two control planes on one Postgres, over real SSH.

An agent joined with two addresses lives on the first control plane; when it
stops (in the test's process) or is killed with SIGKILL (a real `centrality
server` process), the agent goes on to the second one: the same machine (same
id, one machine of that name), every sample it took stored exactly once. Both
control planes share one host key, as a replica set does (docs/deployment.md).

Until the replicas are wired into the registry (issue 14), the second control
plane learns of keys and machines when it starts, so it starts after the agent
enrolled on the first.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

import pytest

from centrality_core.backoff import Backoff
from agent_runtime.collectors import make_collectors
from agent_runtime.main import build_agent, join
from centrality_core.errors import HostKeyMismatch
from centrality_core.settings import resolve_server
from control_plane import history
from control_plane.server import HOST_KEY_FILE, ControlPlane
from control_plane.store import Store
from tests.conftest import cli, wait_for
from tests.integration.test_metrics import QUICK, Recording
from tests.integration.test_processes import _reap, free_port, spawn, start_server  # noqa: F401

pytestmark = pytest.mark.postgres

#: Fast liveness, but a long dead_after: the second control plane must not
#: declare the machine dead while the agent is still on the first one.
THRESHOLDS = {"heartbeat_interval": 0.2, "limbo_after": 1.0, "dead_after": 120.0}


def _share_host_key(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in (HOST_KEY_FILE, HOST_KEY_FILE + ".pub"):
        shutil.copy2(src / name, dst / name)


async def _control_plane(db: str, data_dir: Path, port: int = 0, **kw) -> ControlPlane:
    cp = ControlPlane(resolve_server({"listen": f"127.0.0.1:{port}", "db": db, "data_dir": str(data_dir),
                                      **THRESHOLDS}), **kw)
    await cp.start()
    return cp


def _stored_ts(db: str, machine_id: str) -> list[float]:
    store = Store(db)
    try:
        ts = []
        for payload in store.metric_batches(machine_id, 0, 1e12):
            ts += history.batch_arrays(payload).ts.tolist()
        return ts
    finally:
        store.close()


async def _stored_machine(db: str, name: str) -> str:
    """The id of machine ``name`` once the store has it: a control plane started later
    learns of it from the store (until replicas are wired into the registry)."""
    async def find():
        store = Store(db)
        try:
            return next((m["id"] for m in store.load_machines() if m["name"] == name), None)
        finally:
            store.close()

    deadline = asyncio.get_running_loop().time() + 10
    while (found := await find()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"{name} never reached the store"
        await asyncio.sleep(0.05)
    return found


class RunningAgent:
    def __init__(self, config_dir: Path, index: int = 7) -> None:
        self.rec = Recording(make_collectors("cpu", index=index))
        self.agent = build_agent(config_dir, collectors=self.rec)
        self.agent.backoff = Backoff(initial=0.05, maximum=0.3)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.agent.run(self.stop_event))

    async def registered_at(self, address: str, what: str) -> None:
        await wait_for(lambda: self.task.done() or (self.agent.state.registered
                                                    and self.agent.state.address == address),
                       timeout=30, what=what)
        if self.task.done():
            self.task.result()

    async def drain(self) -> None:
        """Stop sampling; wait until everything taken is acknowledged."""
        self.rec.paused = True
        await wait_for(lambda: not self.agent.sampler.pending and not self.agent.outbox, timeout=30,
                       what="every batch acknowledged")

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 10)


def _join(join_string: str, config_dir: Path, name: str) -> None:
    import msgspec

    from agent_runtime import config as agent_config

    join(join_string, name=name, config_dir=config_dir)
    cfg = agent_config.load(config_dir)
    agent_config.save(config_dir, msgspec.structs.replace(cfg, **QUICK))


async def test_agent_moves_to_the_second_control_plane_when_the_first_stops(home, tmp_path, postgres_db_url):
    a = await _control_plane(postgres_db_url, tmp_path / "a")
    port_b = free_port()
    address_b = f"127.0.0.1:{port_b}"
    _share_host_key(tmp_path / "a", tmp_path / "b")
    b = None
    token = await a.auth.create_token(ttl=600, uses=1, actor="test", address=f"{a.address},{address_b}")
    _join(token["join"], tmp_path / "agent", "steady-01")
    ra = RunningAgent(tmp_path / "agent")
    try:
        await ra.registered_at(a.address, "registration on the first control plane")
        machine_id = a.registry.fleet.get("steady-01").id
        assert await _stored_machine(postgres_db_url, "steady-01") == machine_id
        b = await _control_plane(postgres_db_url, tmp_path / "b", port_b, write_local_context=False)
        assert b.fingerprint == a.fingerprint
        await wait_for(lambda: len(ra.rec.taken) >= 15, what="samples on the first control plane")
        # The last batches the first one stores never get their acks to the agent (the
        # connection dies between the commit and the ack): the agent replays them to the
        # second one, which must see in the store that they are there already.
        a.writer.after_flush = lambda callback: None
        # Four in the outbox: the newest may still be on its way when the first stops, the
        # three before it went out a batch interval earlier and are stored.
        await wait_for(lambda: len(ra.agent.outbox) >= 4, what="batches stored but not acknowledged")
        await a.writer.flush()
        await a.stop()
        await ra.registered_at(address_b, "registration on the second control plane")
        assert b.registry.fleet.get("steady-01").id == machine_id  # the same machine, continued
        await wait_for(lambda: b.ingest.samples_stored >= 5, what="samples on the second control plane")
        await ra.drain()
        await b.writer.flush()
        stored = _stored_ts(postgres_db_url, machine_id)
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(stored) == sorted(ra.rec.taken), "a sample was lost"
        assert ra.agent.state.registrations == 2 and ra.agent.outbox.dropped_total == 0
        # The replayed ones are known for what they are as they arrive: the second control
        # plane took the machine's stored cursor when it registered there, so they are not
        # counted again in its minute rollups either (the store is not asked to skip them).
        assert b.ingest.duplicates >= 3
        counted = sum(m.stats().as_dict()["cpu.percent"][3] for (mid, _), m in b.ingest.rollups.buckets.items()
                      if mid == machine_id)
        assert counted == b.ingest.samples_stored
        names = [m["name"] for m in b.store.load_machines()]
        assert names == ["steady-01"]
        status, out, err = await cli(home, "machines", "ls", "--json")  # the `local` context: a, then down
        assert status == 4, (out, err)
    finally:
        await ra.stop()
        if b is not None:
            await b.stop()
        await a.stop()


async def test_an_unpinned_host_key_is_refused_and_the_agent_keeps_trying(home, tmp_path, postgres_db_url):
    """A replica whose host key is not pinned is never used; with another address
    that is only down, the agent does not give up, and goes live once the pinned
    one is back. A join string with both keys pinned accepts both."""
    a = await _control_plane(postgres_db_url, tmp_path / "a")
    port_b = free_port()
    b = await _control_plane(postgres_db_url, tmp_path / "b", port_b, write_local_context=False)
    assert b.fingerprint != a.fingerprint  # its own host key, not pinned
    port_a = int(a.address.rsplit(":", 1)[1])
    token = await a.auth.create_token(ttl=600, uses=2, actor="test", address=f"{a.address},{b.address}")
    _join(token["join"], tmp_path / "agent", "pinned-01")
    ra = RunningAgent(tmp_path / "agent")
    try:
        await ra.registered_at(a.address, "registration on the first control plane")
        await a.stop()
        await wait_for(lambda: "host key mismatch for " + b.address in ra.agent.state.last_error,
                       what="the unpinned replica refused")
        assert not ra.task.done() and not ra.agent.state.registered
        await asyncio.sleep(1.0)
        assert not ra.agent.state.registered and not ra.task.done()
        a = await _control_plane(postgres_db_url, tmp_path / "a", port_a)
        await ra.registered_at(a.address, "registration once the pinned one is back")
    finally:
        await ra.stop()

    # Only one address, and it presents a key not pinned: the agent stops with the reason.
    from centrality_core import joinstring

    secret = joinstring.decode(token["join"]).t
    _join(joinstring.encode(b.address, a.fingerprint, secret), tmp_path / "agent2", "pinned-02")
    lone = RunningAgent(tmp_path / "agent2", index=8)
    with pytest.raises(HostKeyMismatch, match=f"host key mismatch for {b.address}"):
        await asyncio.wait_for(lone.task, 30)
    # With both keys pinned (`token create --pin`), the second replica is accepted.
    _join(joinstring.with_pins(joinstring.encode(b.address, a.fingerprint, secret), [b.fingerprint]),
          tmp_path / "agent2", "pinned-02")
    lone = RunningAgent(tmp_path / "agent2", index=8)
    try:
        await lone.registered_at(b.address, "registration with both keys pinned")
    finally:
        await lone.stop()
        await b.stop()
        await a.stop()


async def test_kill_9_of_a_server_process_moves_its_agent_to_the_other(home, tmp_path, postgres_db_url):
    port_a, port_b = free_port(), free_port()
    # A replica killed holds its machine until its lease lapses (3 s here): then cp-b moves
    # it to limbo and the agent, retrying there, takes it back.
    lease = ("--replica-lease", "3s", "--replica-renew-interval", "1s")
    server_a = await start_server(home, port_a, "--db", postgres_db_url, "--replica", "cp-a",
                                  "--dead-after", "120s", *lease)
    home_b = tmp_path / "home-b"
    _share_host_key(home / ".local/share/centrality/server", home_b / ".local/share/centrality/server")
    status, out, err = await cli(home, "token", "create", "--address",
                                 f"127.0.0.1:{port_a},127.0.0.1:{port_b}", "--json")
    assert status == 0, err
    _join(json.loads(out)["join"], tmp_path / "agent", "crash-01")
    ra = RunningAgent(tmp_path / "agent")
    try:
        await ra.registered_at(f"127.0.0.1:{port_a}", "registration on cp-a")
        machine_id = await _stored_machine(postgres_db_url, "crash-01")
        server_b = await start_server(home_b, port_b, "--db", postgres_db_url, "--replica", "cp-b",
                                      "--dead-after", "120s", *lease)
        await wait_for(lambda: len(ra.rec.taken) >= 15, what="samples on cp-a")
        server_a.send_signal(signal.SIGKILL)
        await server_a.wait()
        t0 = asyncio.get_running_loop().time()
        await ra.registered_at(f"127.0.0.1:{port_b}", "registration on cp-b")
        failover_s = asyncio.get_running_loop().time() - t0
        await wait_for(lambda: len(ra.rec.taken) >= 40, what="samples on cp-b")
        await ra.drain()
        status, out, err = await cli(home_b, "machines", "ls", "--json")
        assert status == 0, err
        machines = json.loads(out)
        assert [(m["name"], m["state"], m["id"]) for m in machines] == [("crash-01", "live", machine_id)]
        status, out, _ = await cli(home_b, "status", "--json")
        assert json.loads(out)["replica"] == "cp-b"
        stored = _stored_ts(postgres_db_url, machine_id)
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(stored) == sorted(ra.rec.taken), "a sample was lost"
        status, out, _ = await cli(home_b, "metrics", "crash-01", "--since", "10m", "--json")
        assert len(json.loads(out)) == len(ra.rec.taken)
        assert failover_s < 10, failover_s
        server_b.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server_b.wait(), 10) == 0
    finally:
        await ra.stop()
