"""One fleet view on every replica: 3 real ``centrality server --replica`` processes on
the fixture's Postgres, 300 simulated machines spread over them, the real CLI, the
real operator client and the real dashboard against each replica. Last, kill -9 of
one replica: its machines are live again on the others, and no survivor shows a
machine live on the dead replica past its lease.

One replica set for the module (starting it and joining 300 machines is most of
the time); the tests run in order and the last one kills a replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
import pytest_asyncio

from centrality_core.client import OperatorClient
from centrality_core.documents import Snapshot, Update
from tests.fixtures.postgres import fresh_database
from tests.fixtures.replicaset import replica_set

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.asyncio(loop_scope="module")]

N = 300
NAMES = ("cp-a", "cp-b", "cp-c")
#: Longer than the fixture's 3 s, so that a killed replica is seen not answering
#: before a survivor reaps it.
LEASE = 6.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rs(tmp_path_factory, postgres_server):
    with fresh_database(postgres_server) as db:
        # heartbeats as the defaults have them (the fixture's 0.5 s / 3 s make a loaded box's
        # 300 machines flap between live and limbo, which is not what this module tests)
        async with replica_set(tmp_path_factory.mktemp("fleet"), db, 3, replica_lease=str(LEASE),
                               heartbeat_interval="1", limbo_after="15") as rs:
            await rs.simulate(N)
            await rs.wait_live(N, timeout="180s")
            yield rs


async def _json(rs, i: int, *args: str) -> tuple[int, object, str]:
    status, out, err = await rs.cli(i, *args, "--json")
    return status, json.loads(out), err


async def _ls(rs, i: int) -> list[dict]:
    status, rows, err = await _json(rs, i, "machines", "ls")
    assert status == 0, err
    return rows


async def test_machines_ls_on_each_replica_lists_the_whole_fleet_live(rs):
    holders = None
    for i in range(3):
        rows = await _ls(rs, i)
        assert len(rows) == N and len({r["name"] for r in rows}) == N
        assert Counter(r["state"] for r in rows) == {"live": N}
        assert not any(r["from_store"] for r in rows) and all(r["connected"] for r in rows)
        by_replica = Counter(r["replica"] for r in rows)
        assert set(by_replica) == set(NAMES), by_replica  # spread over the three
        mine = {r["name"]: r["replica"] for r in rows}
        assert holders is None or mine == holders  # every replica says the same of who holds what
        holders = mine


async def test_top_shows_latest_values_of_every_machine_sorted_across_replicas(rs):
    for i in range(3):
        status, rows, err = await _json(rs, i, "top", "--sort", "cpu")
        assert status == 0, err
        assert len(rows) == N
        elsewhere = [r for r in rows if r["replica"] != NAMES[i]]
        assert len(elsewhere) > N / 3  # machines held by the two others...
        assert all(r["cpu_percent"] is not None and r["sample_age_s"] < 15 for r in rows)  # ...with fresh values
        cpus = [r["cpu_percent"] for r in rows]
        assert cpus == sorted(cpus, reverse=True)  # one order across the replicas' rows
        assert len({r["replica"] for r in rows[: N // 2]}) > 1


async def test_machines_show_of_a_machine_held_elsewhere_is_its_holders_answer(rs):
    rows = await _ls(rs, 0)
    name = next(r["name"] for r in rows if r["replica"] == "cp-b")
    status, detail, err = await _json(rs, 0, "machines", "show", name)
    assert status == 0, err
    assert detail["replica"] == "cp-b" and detail["connected"] and detail["heartbeat_age_s"] < 5
    assert detail["info"]["hostname"] and any(e["kind"] == "registered" for e in detail["events"])


async def test_status_on_each_replica_counts_the_fleet_and_lists_the_replicas(rs):
    for i in range(3):
        status, s, err = await _json(rs, i, "status")
        assert status == 0, err
        assert s["machines"] == {"live": N, "limbo": 0, "dead": 0} and s["machines_from_store"] == 0
        assert s["agents_connected"] == N
        assert [r["name"] for r in s["replicas"]] == list(NAMES)
        assert [r["self"] for r in s["replicas"]] == [j == i for j in range(3)]
        assert all(r["reachable"] and r["lease"] == "current" and r["error"] is None for r in s["replicas"])
        assert sum(r["machines_held"] for r in s["replicas"]) == N
        assert sum(r["agents_connected"] for r in s["replicas"]) == N
        assert not s["warnings"]
    status, out, err = await rs.cli(1, "status")  # for people: a line per replica
    assert status == 0, err
    for name in NAMES:
        assert f"replica {name}" in out
    assert "this one" in out and "answered" in out


async def test_wait_on_each_replica_counts_the_whole_fleet(rs):
    for i in range(3):
        status, w, err = await _json(rs, i, "wait", "--live", str(N), "--timeout", "10s")
        assert status == 0, err
        assert w["live"] == N and len(w["machines"]) == N and not w["timed_out"]
    status, w, err = await _json(rs, 2, "wait", "--live", str(N + 1), "--timeout", "2s")
    assert status == 124 and w["live"] == N and w["timed_out"]


async def test_events_on_one_replica_include_the_others_machines(rs):
    rows = await _ls(rs, 0)
    elsewhere = {r["name"] for r in rows if r["replica"] != "cp-a"}
    status, events, err = await _json(rs, 0, "events", "--limit", "1000")
    assert status == 0, err
    registered = {e["machine"] for e in events if e["kind"] == "registered"}
    assert elsewhere <= registered


async def test_the_subscription_on_one_replica_carries_the_others_machines_live(rs):
    rows = await _ls(rs, 0)
    held_by_b = {r["name"] for r in rows if r["replica"] == "cp-b"}
    async with _client(rs, 0) as client:
        stream = client.subscribe(interval="0.5s")
        snapshot = await anext(stream)
        assert isinstance(snapshot, Snapshot) and len(snapshot.machines) == N
        first = {r.name: r for r in snapshot.machines}
        assert all(first[n].state == "live" and first[n].replica == "cp-b" and first[n].cpu_percent is not None
                   for n in held_by_b)
        newer: set[str] = set()
        deadline = time.monotonic() + 20
        while len(newer) < len(held_by_b) // 2 and time.monotonic() < deadline:
            doc = await asyncio.wait_for(anext(stream), 10)
            assert isinstance(doc, Update)
            newer |= {r.name for r in doc.machines if r.name in held_by_b and r.replica == "cp-b"
                      and r.sample_ts > first[r.name].sample_ts and not r.from_store}
        assert len(newer) >= len(held_by_b) // 2  # B's machines update on A's stream
        await stream.aclose()


async def test_the_dashboard_on_one_replica_shows_another_replicas_machines_updating(rs, monkeypatch):
    from tui.app import CentralityApp
    from tui.source import OperatorSource

    from tests.tui.conftest import until

    rows = await _ls(rs, 0)
    held_by_c = sorted(r["name"] for r in rows if r["replica"] == "cp-c")
    monkeypatch.setenv("HOME", str(rs.replicas[0].home))  # the `local` context names replica A
    app = CentralityApp(OperatorSource())
    async with app.run_test(size=(150, 44)) as pilot:
        model = app.model
        await until(pilot, lambda: len(model.rows) == N and all(model.rows[n].cpu is not None for n in held_by_c),
                    what="every machine, those held by cp-c with figures", timeout=30)
        assert all(model.rows[n].state == "live" for n in held_by_c)
        spark = {n: len(model.rows[n].cpu_spark) for n in held_by_c}
        await until(pilot, lambda: sum(len(model.rows[n].cpu_spark) > spark[n] for n in held_by_c)
                    >= len(held_by_c) // 2, what="cp-c's machines updating on A's dashboard", timeout=30)


async def test_after_kill_9_of_a_replica_its_machines_come_back_and_none_stays_live_on_it(rs):
    await rs.kill(2)  # cp-c
    killed = time.monotonic()
    status, s, err = await _json(rs, 0, "status")
    assert status == 0, err  # the replica asked is healthy: a lost peer is a warning
    c = next((r for r in s["replicas"] if r["name"] == "cp-c"), None)
    if time.monotonic() - killed < LEASE - 1:  # not reaped yet: listed, not answering
        assert c is not None
    if c is not None:
        assert not c["reachable"] and c["error"]
        assert any("cp-c" in w for w in s["warnings"])
    last_live_on_c = killed
    while True:
        asked = time.monotonic()
        rows = await _ls(rs, 1)
        on_c = [r for r in rows if r["replica"] == "cp-c" and r["state"] == "live"]
        assert all(r["from_store"] for r in on_c)  # never presented as confirmed
        if on_c:
            last_live_on_c = asked
        live = [r for r in rows if r["state"] == "live" and not r["from_store"]]
        if len(live) == N:
            break
        assert asked - killed < 60, (f"{len(live)} of {N} live again after 60s",
                                     Counter((r["state"], r["replica"], r["from_store"]) for r in rows))
        await asyncio.sleep(0.5)
    # the dead replica's lease, a round of the survivors' renewals, and one request
    assert last_live_on_c - killed <= LEASE + 3
    assert Counter(r["replica"] for r in rows).keys() == {"cp-a", "cp-b"}
    status, w, err = await _json(rs, 0, "wait", "--live", str(N), "--timeout", "10s")
    assert status == 0 and w["live"] == N, err
    status, s, err = await _json(rs, 0, "status")
    assert status == 0 and [r["name"] for r in s["replicas"]] == ["cp-a", "cp-b"]


def _client(rs, i: int):
    """The real operator client on replica ``i``'s ``local`` context."""
    import os

    old = os.environ.get("HOME")
    os.environ["HOME"] = str(rs.replicas[i].home)
    try:
        return OperatorClient()
    finally:
        if old is not None:
            os.environ["HOME"] = old
