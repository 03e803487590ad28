"""Several control-plane replicas on one Postgres, in one test process: the name
race, start-up beside a live replica, a lapsed lease reaped once, keys, tokens,
revocation and drains seen on every replica.

Agents are hand-driven (``hostile.RawAgent``) so that two hellos can be sent
to two replicas at the same instant.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from centrality_core import protocol as p
from centrality_core.settings import resolve_server
from control_plane.server import ControlPlane
from control_plane.store import Store, replicas
from tests.conftest import FAST, wait_for
from tests.integration.hostile import RawAgent, new_key

pytestmark = pytest.mark.postgres

LEASE = {"replica_lease": 1.5, "replica_renew_interval": 0.3}
#: For the tests that are not about lapsing: a lease a loaded box cannot let lapse by
#: accident (a lapse mid-race would rightly let the other replica have the name).
STEADY = {"replica_lease": 10.0, "replica_renew_interval": 0.5}
#: Many test connections from 127.0.0.1 in a few seconds.
OPEN = {"connection_rate_per_source": 1000.0, "connection_burst_per_source": 1000}


async def _replica(db: str, tmp_path, name: str, **kw) -> ControlPlane:
    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": db, "replica": name,
                                      "data_dir": str(tmp_path / name), **FAST, **LEASE, **OPEN, **kw}),
                      write_local_context=False)
    await cp.start()
    return cp


@pytest.fixture
async def pair(home, tmp_path, postgres_db_url):
    a = await _replica(postgres_db_url, tmp_path, "cp-a", **STEADY)
    b = await _replica(postgres_db_url, tmp_path, "cp-b", **STEADY)
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def _info(host: str) -> dict:
    return {"hostname": host, "machine_id": f"id-{host}", "cpu_model": "test", "cpu_count": 4}


async def _agent_key(cp: ControlPlane, name: str):
    key = new_key()
    await cp.auth.add_key(name=name, role="agent", public_key=key.export_public_key().decode(), actor="test")
    return key


def _stored(db: str, name: str) -> list[tuple]:
    """(id, state, holder) of every stored machine of that name."""
    store = Store(db)
    try:
        return [(r["id"], r["state"], r["held_by"]) for r in replicas.machine_rows(store, name=name)]
    finally:
        store.close()


def _events(db: str, kind: str, name: str) -> list[dict]:
    store = Store(db)
    try:
        return [e for e in store.events(limit=1000, machine=name) if e["kind"] == kind]
    finally:
        store.close()


async def test_two_agents_racing_for_one_name_on_two_replicas_one_is_live_every_time(pair, postgres_db_url):
    a, b = pair
    key_a, key_b = await _agent_key(a, "agent-a"), await _agent_key(a, "agent-b")  # b looks key_b up
    rounds, winners = 30, {"cp-a": 0, "cp-b": 0}
    for i in range(rounds):
        name = f"race-{i}"
        # Two different machines on even rounds; the same machine (specs and key) twice on odd ones.
        same = i % 2 == 1
        raw_a = await RawAgent.connect(a, key_a)
        raw_b = await RawAgent.connect(b, key_a if same else key_b)
        try:
            ans_a, ans_b = await asyncio.gather(raw_a.hello(name, _info("host-a")),
                                                raw_b.hello(name, _info("host-a" if same else "host-b")))
            kinds = sorted(type(x).__name__ for x in (ans_a, ans_b))
            assert kinds == ["Registered", "Rejected"], (i, ans_a, ans_b)
            loser = ans_a if isinstance(ans_a, p.Rejected) else ans_b
            assert loser.code == ("still_connected" if same else "name_in_use"), loser
            winner, cp_w, cp_l = ("cp-a", a, b) if isinstance(ans_a, p.Registered) else ("cp-b", b, a)
            winners[winner] += 1
            stored = _stored(postgres_db_url, name)
            assert stored == [(cp_w.registry.machine(name).id, "live", winner)]
            # The loser knows the machine now, as live on the winner: never as a new one of its own.
            assert cp_l.registry.machine(name).held_by == winner
        finally:
            await raw_a.close()
            await raw_b.close()
    assert sum(winners.values()) == rounds


async def test_a_replica_starting_beside_a_live_one_leaves_its_machines_live(home, tmp_path, postgres_db_url):
    a = await _replica(postgres_db_url, tmp_path, "cp-a")
    key = await _agent_key(a, "agent-1")
    raw = await RawAgent.connect(a, key)
    b = None
    try:
        assert isinstance(await raw.hello("gpu-01", _info("gpu-01")), p.Registered)
        machine_id = a.registry.machine("gpu-01").id
        await a.writer.flush()
        b = await _replica(postgres_db_url, tmp_path, "cp-b")
        await b.writer.flush()
        assert _stored(postgres_db_url, "gpu-01") == [(machine_id, "live", "cp-a")]
        assert _events(postgres_db_url, "disconnected", "gpu-01") == []
        assert b.registry.machine("gpu-01").held_by == "cp-a"
        # Another machine of that name on b is refused, and a's row is left as it is.
        other = await RawAgent.connect(b, await _agent_key(b, "agent-2"))
        answer = await other.hello("gpu-01", _info("imposter"))
        await other.close()
        assert isinstance(answer, p.Rejected) and answer.code == "name_in_use"
        await asyncio.sleep(0.3)  # b's writer had its chance to write what it should not
        assert _stored(postgres_db_url, "gpu-01") == [(machine_id, "live", "cp-a")]
    finally:
        await raw.close()
        if b is not None:
            await b.stop()
        await a.stop()


async def test_a_lapsed_replicas_machines_go_to_limbo_once_and_come_back_on_a_survivor(home, tmp_path,
                                                                                      postgres_db_url):
    # Slow thresholds: the hand-driven agent sends no heartbeats, and its machine must stay
    # live on a until the lease, not the silence, decides.
    slow = {"heartbeat_interval": 5.0, "limbo_after": 30.0, "dead_after": 60.0}
    a = await _replica(postgres_db_url, tmp_path, "cp-a", **slow)
    b = await _replica(postgres_db_url, tmp_path, "cp-b", **slow)
    try:
        await _lapse_and_come_back(a, b, postgres_db_url)
    finally:
        await b.stop()
        await a.stop()


async def _lapse_and_come_back(a: ControlPlane, b: ControlPlane, postgres_db_url: str) -> None:
    key = await _agent_key(a, "agent-1")
    raw = await RawAgent.connect(a, key)
    assert isinstance(await raw.hello("gpu-02", _info("gpu-02")), p.Registered)
    machine_id = a.registry.machine("gpu-02").id
    renewer = next(t for t in a.replica_part._tasks if t.get_name() == "replica-lease")
    renewer.cancel()  # a stops renewing (as if its process hung or was cut off)
    t0 = time.monotonic()
    await wait_for(lambda: _stored(postgres_db_url, "gpu-02") == [(machine_id, "limbo", "")], timeout=5,
                   what="the survivor moving gpu-02 to limbo")
    lapse_s = time.monotonic() - t0
    assert lapse_s < LEASE["replica_lease"] + 1.5
    [ev] = _events(postgres_db_url, "replica_lost", "gpu-02")
    assert ev["actor"] == "replica:cp-b" and "cp-a" in ev["reason"]
    # The agent takes its machine back on the survivor: the same machine, live there.
    again = await RawAgent.connect(b, key)
    answer = await again.hello("gpu-02", _info("gpu-02"))
    assert isinstance(answer, p.Registered) and answer.continued and answer.machine_id == machine_id
    assert _stored(postgres_db_url, "gpu-02") == [(machine_id, "live", "cp-b")]
    # The reaped incarnation can no longer claim: a's round closes its agents and starts afresh.
    await a.replica_part.round()
    await wait_for(lambda: raw.conn.is_closed(), timeout=3, what="a closing its agent's connection")
    assert _stored(postgres_db_url, "gpu-02") == [(machine_id, "live", "cp-b")]
    await asyncio.sleep(2 * LEASE["replica_renew_interval"])
    assert len(_events(postgres_db_url, "replica_lost", "gpu-02")) == 1
    await again.close()


async def test_a_key_and_a_token_made_on_one_replica_work_on_the_other_and_revocation_reaches_it(pair):
    a, b = pair
    token = await a.auth.create_token(ttl=600, uses=1, actor="test", address=a.address)
    from centrality_core import joinstring

    secret = joinstring.decode(token["join"]).t
    key = new_key()
    raw = await RawAgent.connect(b, key, enrolling=True)
    assert isinstance(await raw.hello("gpu-03", _info("gpu-03"), token=secret), p.Registered)
    again = await RawAgent.connect(b, new_key(), enrolling=True)  # the one use is spent
    answer = await again.hello("gpu-04", _info("gpu-04"), token=secret)
    assert isinstance(answer, p.Rejected) and answer.code == "token_used"
    await again.close()
    # The key enrolled on b logs in on a as an agent (a looks it up in the store).
    fp = key.get_fingerprint("sha256")
    on_a = await RawAgent.connect(a, key)  # as "agent", not "centrality-join": refused if unknown
    await on_a.close()
    assert a.auth.role_of(fp) == "agent"
    # Revoked on a: b closes the connection that key has there, within a second.
    await b.replica_part.listener.listening.wait()
    t0 = time.monotonic()
    await a.auth.revoke_key(fp)
    await wait_for(lambda: raw.conn.is_closed(), timeout=1.0, interval=0.01, what="b closing the revoked key")
    assert time.monotonic() - t0 < 1.0
    assert fp not in b.auth.keys


async def test_revocation_still_reaches_a_replica_whose_listening_connection_dropped(pair):
    a, b = pair
    key = await _agent_key(a, "agent-1")
    raw = await RawAgent.connect(b, key)
    assert isinstance(await raw.hello("gpu-05", _info("gpu-05")), p.Registered)
    await b.replica_part.listener.listening.wait()
    await b.replica_part.listener.drop()
    await wait_for(lambda: b.replica_part.listener.listening.is_set(), timeout=5, what="the listener back")
    await a.auth.revoke_key(key.get_fingerprint("sha256"))
    await wait_for(lambda: raw.conn.is_closed(), timeout=1.0, what="b closing the revoked key")


async def test_a_drain_on_one_replica_reaches_the_replica_holding_the_machine(pair, postgres_db_url):
    a, b = pair
    key = await _agent_key(a, "agent-1")
    raw = await RawAgent.connect(b, key)
    assert isinstance(await raw.hello("gpu-06", _info("gpu-06")), p.Registered)
    await b.replica_part.listener.listening.wait()
    await a.replica_part.sync()
    assert a.registry.machine("gpu-06").held_by == "cp-b"
    assert a.flags.drain("gpu-06", "bad fan", "op@test")
    a.flags.label("gpu-06", {"rack": "r7"}, [], "op@test")
    await wait_for(lambda: b.registry.records["gpu-06"].flags.drained, timeout=1.0, what="the drain on b")
    await wait_for(lambda: b.registry.records["gpu-06"].labels.get("rack") == "r7", timeout=1.0,
                   what="the label on b")
    assert b.flags.view("gpu-06")["drain"]["reason"] == "bad fan"
    # b writing its row (as it does on every event) keeps the drain.
    b.registry.save("gpu-06")
    await b.writer.flush()
    store = Store(postgres_db_url)
    try:
        with store.engine.connect() as conn:
            drained, labels = conn.execute(sa.text(
                "SELECT drained, operator_labels FROM machines WHERE name = 'gpu-06'")).one()
    finally:
        store.close()
    assert drained is True and labels == {"rack": "r7"}
    await raw.close()
