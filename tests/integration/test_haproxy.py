"""Two `centrality server --replica` processes behind a real HAProxy (docker/haproxy.cfg,
the file compose runs), on the fixture's real Postgres, all on loopback.

An agent joins through HAProxy's one address; the replica holding it is killed
with SIGKILL; the agent is live again through the same address, on the other
replica, within the bound: the same machine, one machine of that name, every
sample stored once. The replicas share one host key (``--host-key``), so the
agent pins one fingerprint whichever answers; HAProxy connects to them from
127.0.0.2 with a PROXY v2 header, trusted from that address only, and the
replicas log the agent's own address (127.0.0.1), not HAProxy's.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control_plane.store import Store, replicas
from tests.conftest import REPO, cli, cli_env, wait_for
from tests.fixtures.ports import free_port
from tests.integration.test_failover import RunningAgent, _join, _stored_machine, _stored_ts
from tests.integration.test_processes import _reap, _spawned  # noqa: F401 - kills what is left

pytestmark = pytest.mark.postgres

LB_SOURCE = "127.0.0.2"
LEASE = ("--replica-lease", "3s", "--replica-renew-interval", "1s")
#: kill -9 to live again: the lease (3 s) and a renewal (1 s) until the survivor takes the
#: machine, plus HAProxy redispatching and the agent's backoff. Measured ~5 s.
FAILOVER_BOUND_S = 20


class Replica:
    def __init__(self, name: str, port: int, home: Path, proc, log: Path) -> None:
        self.name, self.port, self.home, self.proc, self.log = name, port, home, proc, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


async def _replica(name: str, home: Path, db: str, host_key: Path, lb: str, tmp_path: Path) -> Replica:
    port = free_port()
    log = tmp_path / f"{name}.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:  # a file, not a pipe nobody reads once it is up
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "centrality_cli", "server",
            "--listen", f"127.0.0.1:{port}", "--db", db, "--replica", name, "--host-key", str(host_key),
            "--advertise", lb, "--proxy-protocol-from", LB_SOURCE, "--heartbeat-interval", "0.5s",
            "--limbo-after", "2s", "--dead-after", "120s", *LEASE,
            env=cli_env(home), cwd=str(REPO), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    _spawned.append(proc)
    replica = Replica(name, port, home, proc, log)
    await wait_for(lambda: "listening on" in replica.log_text() or proc.returncode is not None, timeout=30,
                   what=f"{name} listening")
    assert proc.returncode is None, replica.log_text()
    return replica


def _holder(db: str, machine_id: str) -> str:
    store = Store(db)
    try:
        return replicas.holdings(store).get(machine_id, "")
    finally:
        store.close()


def _registered_lines(replica: Replica, name: str) -> list[str]:
    return [line for line in replica.log_text().splitlines() if f"[agent={name} " in line and "registered (" in line]


async def test_failover_through_haproxy_after_kill_9(home, tmp_path, postgres_db_url, haproxy):
    host_key = tmp_path / "hostkey" / "ssh_host_ed25519_key"
    host_key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "centrality", "-f", str(host_key)],
                   check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{host_key}.pub"], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    lb_port = free_port()
    lb = f"127.0.0.1:{lb_port}"
    # One after the other: the first migrates the fresh database.
    first = await _replica("cp-1", home, postgres_db_url, host_key, lb, tmp_path)
    second = await _replica("cp-2", tmp_path / "home-2", postgres_db_url, host_key, lb, tmp_path)
    by_name = {r.name: r for r in (first, second)}
    proxy = await haproxy({"CENTRALITY_LB_BIND": lb, "CENTRALITY_CP1": f"127.0.0.1:{first.port}",
                           "CENTRALITY_CP2": f"127.0.0.1:{second.port}", "CENTRALITY_LB_SOURCE": LB_SOURCE,
                           "CENTRALITY_LB_MAXCONN": "1000"})

    # The operator reaches the replica set through HAProxy, pinning its one key.
    status, out, err = await cli(home, "login", lb, "--fingerprint", fingerprint, "--name", "lb")
    assert status == 0, (out, err, proxy.log_text())
    status, out, err = await cli(home, "token", "create", "--json")
    assert status == 0, err
    join = json.loads(out)["join"]
    from centrality_core import joinstring

    assert joinstring.decode(join).addresses == [lb] and joinstring.decode(join).fingerprints == [fingerprint]
    _join(join, tmp_path / "agent", "lb-01")
    ra = RunningAgent(tmp_path / "agent")
    try:
        await ra.registered_at(lb, "registration through HAProxy")
        machine_id = await _stored_machine(postgres_db_url, "lb-01")
        holder = by_name[await wait_for(lambda: _holder(postgres_db_url, machine_id), what="a holder")]
        survivor = second if holder is first else first
        # The holder saw the agent's own address; HAProxy's is only the "via".
        (line,) = _registered_lines(holder, "lb-01")
        assert re.search(rf"registered \(new\) from 127\.0\.0\.1:\d+ via {re.escape(LB_SOURCE)}:\d+$", line), line
        await wait_for(lambda: len(ra.rec.taken) >= 15, what="samples on the first replica")

        holder.proc.send_signal(signal.SIGKILL)
        await holder.proc.wait()
        t0 = time.monotonic()
        await wait_for(lambda: ra.task.done() or (ra.agent.state.registrations >= 2 and ra.agent.state.registered),
                       timeout=FAILOVER_BOUND_S, what="the agent live again through HAProxy")
        failover_s = time.monotonic() - t0
        assert ra.agent.state.address == lb
        assert _holder(postgres_db_url, machine_id) == survivor.name
        (line,) = _registered_lines(survivor, "lb-01")
        found = re.search(rf"registered \(continued\) from 127\.0\.0\.1:(\d+) via {re.escape(LB_SOURCE)}:\d+$",
                          line)
        assert found, line
        client_port = found.group(1)

        await wait_for(lambda: len(ra.rec.taken) >= 40, what="samples on the survivor")
        await ra.drain()
        # Through HAProxy: one machine of that name, live, the same one, on the survivor.
        status, out, err = await cli(home, "machines", "ls", "--json")
        assert status == 0, err
        assert [(m["name"], m["state"], m["id"]) for m in json.loads(out)] == [("lb-01", "live", machine_id)]
        status, out, err = await cli(home, "status", "--json")
        assert status == 0, err
        doc = json.loads(out)
        assert (doc["replica"], doc["fingerprint"]) == (survivor.name, fingerprint)
        stored = _stored_ts(postgres_db_url, machine_id)
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(stored) == sorted(ra.rec.taken), "a sample was lost"
        assert failover_s < FAILOVER_BOUND_S
        print(f"failover through HAProxy after kill -9: {failover_s:.1f}s")
        # HAProxy noticed: the killed replica is down in its log.
        await wait_for(lambda: f"replicas/{'cp-1' if holder is first else 'cp-2'} is DOWN" in proxy.log_text(),
                       what="HAProxy marking the killed replica down")
        survivor.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(survivor.proc.wait(), 10) == 0
        # The port the survivor logged is the agent's own: HAProxy logs that session
        # (when it ends) from the same client address and port.
        await wait_for(lambda: re.search(rf"^127\.0\.0\.1:{client_port} .* replicas/{survivor.name} ",
                                         proxy.log_text(), re.M), what="HAProxy's log of the agent's session")
    finally:
        await ra.stop()
