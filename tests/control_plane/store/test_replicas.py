"""Replica leases and holdings on a real Postgres (control_plane/store/replicas.py).

The exactly-once rule is tested as it will be used: several survivors, each
with its own connection pool, reaping the same lapsed replica at the same instant.
"""

from __future__ import annotations

import threading

import pytest

from centrality_core.errors import Conflict, UsageError
from control_plane.store import Store
from control_plane.store import replicas
from control_plane.store.db import WriteBatch
from tests.control_plane.store.test_store import machine_row

pytestmark = pytest.mark.postgres


def _machines(store: Store, prefix: str, n: int, state: str = "live") -> list[str]:
    batch = WriteBatch()
    rows = [machine_row(f"{prefix}-{i:02d}", state=state) for i in range(n)]
    for r in rows:
        batch.upsert(r)
    store.write(batch)
    return [r["id"] for r in rows]


def _states(store: Store) -> dict[str, str]:
    return {m["name"]: m["state"] for m in store.load_machines()}


def test_default_and_invalid_names():
    assert replicas.default_name(8022, "CP-East.1") == "cp-east.1-8022"
    assert replicas.default_name(9, "x" * 100) == "x" * 57 + "-9"
    with pytest.raises(UsageError, match="invalid replica name"):
        replicas.check_name("Bad Name")


def test_a_running_replicas_name_is_refused_until_its_lease_lapses(two_stores):
    a, _ = two_stores
    lease = replicas.start(a, "cp1", "10.0.0.1:8022", now=100.0, ttl=15)
    with pytest.raises(Conflict, match="in use by a running replica at 10.0.0.1:8022"):
        replicas.start(a, "cp1", "10.0.0.2:8022", now=110.0, ttl=15)
    # The same address: that process is gone (we hold its port), the name is ours at once.
    again = replicas.start(a, "cp1", "10.0.0.1:8022", now=111.0, ttl=15)
    assert again.started_at == 111.0
    assert replicas.renew(a, lease, now=112.0) is None, "the old incarnation renewed"
    # Lapsed: anyone may take the name.
    assert replicas.start(a, "cp1", "10.0.0.2:8022", now=200.0).address == "10.0.0.2:8022"


def test_renew_claim_and_let_go(two_stores):
    a, _ = two_stores
    ids = _machines(a, "gpu", 3)
    lease = replicas.start(a, "cp1", "h:1", now=100.0, ttl=15)
    lease = replicas.renew(a, lease, now=110.0, ttl=15)
    assert lease.expires_at == 125.0
    assert replicas.claim(a, lease, ids, now=110.0)
    b = replicas.start(a, "cp2", "h:2", now=110.0)
    assert replicas.claim(a, b, ids[:1], now=111.0)  # its agent moved to cp2
    assert replicas.holdings(a) == {ids[0]: "cp2", ids[1]: "cp1", ids[2]: "cp1"}
    replicas.let_go(a, lease, ids)  # only what cp1 holds goes
    assert replicas.holdings(a) == {ids[0]: "cp2"}
    assert replicas.lapsed(a, now=120.0) == []


def test_a_lapsed_replicas_live_machines_go_to_limbo_once_with_events(two_stores):
    a, _ = two_stores
    ids = _machines(a, "gpu", 3) + _machines(a, "old", 1, state="dead")
    dead = replicas.start(a, "cp1", "h:1", now=100.0, ttl=15)
    replicas.claim(a, dead, ids, now=100.0)
    survivor = replicas.start(a, "cp2", "h:2", now=100.0, ttl=15)
    assert replicas.reap(a, "cp2", "cp1", now=110.0) is None  # not lapsed yet
    survivor = replicas.renew(a, survivor, now=110.0, ttl=15)
    assert [lease.name for lease in replicas.lapsed(a, now=116.0)] == ["cp1"]
    assert replicas.reap(a, "cp2", "cp1", now=116.0) == ["gpu-00", "gpu-01", "gpu-02"]
    assert replicas.reap(a, "cp3", "cp1", now=117.0) is None
    assert _states(a) == {"gpu-00": "limbo", "gpu-01": "limbo", "gpu-02": "limbo", "old-00": "dead"}
    events = a.events(limit=10)
    assert sorted(e["machine_name"] for e in events) == ["gpu-00", "gpu-01", "gpu-02"]
    assert {(e["kind"], e["from_state"], e["to_state"], e["actor"]) for e in events} == {
        ("replica_lost", "live", "limbo", "replica:cp2")}
    assert "replica cp1 stopped renewing its lease" in events[0]["reason"]
    assert replicas.holdings(a) == {} and replicas.lapsed(a, now=117.0) == []
    assert [(lease.name, reaped) for lease, reaped in replicas.leases(a)] == [("cp1", 116.0), ("cp2", None)]
    # The reaped incarnation is fenced off: it can neither renew nor claim.
    assert replicas.renew(a, dead, now=117.0) is None
    assert not replicas.claim(a, dead, ids[:1], now=117.0)
    assert replicas.holdings(a) == {}


def _race(fns) -> list:
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i):
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_survivors_racing_reap_exactly_once(two_stores):
    a, b = two_stores
    for r in range(25):
        name = f"cp-{r}"
        ids = _machines(a, f"r{r}", 4)
        lease = replicas.start(a, name, f"h:{r}", now=100.0, ttl=15)
        replicas.claim(a, lease, ids, now=100.0)
        got = _race([lambda: replicas.reap(a, "cp-a", name, now=200.0),
                     lambda: replicas.reap(b, "cp-b", name, now=200.0)])
        winners = [g for g in got if g is not None]
        assert len(winners) == 1, f"round {r}: {got}"
        assert winners[0] == [f"r{r}-{i:02d}" for i in range(4)]
    events = a.events(limit=1000)
    assert len(events) == 25 * 4
    assert len({e["machine_id"] for e in events}) == 25 * 4, "a machine moved to limbo twice"


def test_a_renewal_racing_a_reap_one_of_them_wins(two_stores):
    a, b = two_stores
    outcomes = set()
    for r in range(25):
        name = f"cp-{r}"
        ids = _machines(a, f"s{r}", 2)
        lease = replicas.start(a, name, f"h:{r}", now=100.0, ttl=15)
        replicas.claim(a, lease, ids, now=100.0)
        renewed, reaped = _race([lambda: replicas.renew(a, lease, now=120.0, ttl=15),
                                 lambda: replicas.reap(b, "cp-b", name, now=120.0)])
        assert (renewed is None) != (reaped is None), f"round {r}: renewed={renewed} reaped={reaped}"
        states = {m["name"]: m["state"] for m in a.load_machines() if m["name"].startswith(f"s{r}-")}
        assert set(states.values()) == ({"limbo"} if reaped else {"live"})
        outcomes.add("reaped" if reaped else "renewed")
    assert outcomes  # which one wins is the scheduler's; that only one does is the point
