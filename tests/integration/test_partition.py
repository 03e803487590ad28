"""A replica cut off from Postgres (a real partition: its database connections go
through a TCP proxy the test cuts) closes its agents' connections once it has
failed to renew its lease for longer than the lease, so they move to a replica
that can still write; when the partition heals it starts a new incarnation and
serves nothing that was taken from it."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.engine import make_url

from centrality_core import protocol as p
from tests.conftest import wait_for
from tests.fixtures.tcpproxy import TcpProxy
from tests.integration.hostile import RawAgent
from tests.integration.test_replicas import LEASE, _agent_key, _events, _info, _replica, _stored

pytestmark = pytest.mark.postgres

#: Slow liveness: the hand-driven agent sends no heartbeats; the lease decides.
SLOW = {"heartbeat_interval": 5.0, "limbo_after": 30.0, "dead_after": 60.0}


async def test_a_replica_cut_off_from_postgres_lets_its_agents_go_and_rejoins_afresh(home, tmp_path,
                                                                                    postgres_db_url):
    url = make_url(postgres_db_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    a = await _replica(via_proxy, tmp_path, "cp-a", **SLOW)
    b = await _replica(postgres_db_url, tmp_path, "cp-b", **SLOW)
    try:
        key = await _agent_key(a, "agent-1")
        raw = await RawAgent.connect(a, key)
        assert isinstance(await raw.hello("gpu-03", _info("gpu-03")), p.Registered)
        machine_id = a.registry.machine("gpu-03").id
        await wait_for(lambda: _stored(postgres_db_url, "gpu-03") == [(machine_id, "live", "cp-a")], timeout=5)

        await proxy.cut()
        t0 = time.monotonic()
        await wait_for(lambda: raw.conn.is_closed(), timeout=LEASE["replica_lease"] * 4,
                       what="cp-a closing its agent's connection, cut off from the store")
        closed_after = time.monotonic() - t0
        # before the lease can lapse (counted from its last renewal, up to one interval before the cut)
        assert closed_after < LEASE["replica_lease"], closed_after
        # Meanwhile the survivor moved the machine to limbo (once), and it comes back there.
        await wait_for(lambda: _stored(postgres_db_url, "gpu-03") == [(machine_id, "limbo", "")], timeout=5)
        again = await RawAgent.connect(b, key)
        answer = await again.hello("gpu-03", _info("gpu-03"))
        assert isinstance(answer, p.Registered) and answer.continued and answer.machine_id == machine_id

        await proxy.heal()
        # cp-a's renewal now finds its incarnation reaped: it starts afresh, holding nothing.
        await wait_for(lambda: a.replica_part.lease is not None and a.replica_part.lease.started_at > t0,
                       timeout=15, what="cp-a starting a new incarnation after the partition")
        await asyncio.sleep(3 * LEASE["replica_renew_interval"])
        assert _stored(postgres_db_url, "gpu-03") == [(machine_id, "live", "cp-b")]
        assert len(_events(postgres_db_url, "replica_lost", "gpu-03")) == 1
        assert a.registry.machine("gpu-03").conn is None
        await again.close()
    finally:
        await b.stop()
        await a.stop()
        await proxy.close()
