"""``exec`` on any replica acts on the whole fleet (control_plane/peer_exec.py).

One set of 3 real ``centrality server --replica`` processes on the fixture's
Postgres and 300 simulated machines spread over them, shared by the tests of
this module (in order: the last one kills a replica). The real CLI is run
against each replica; simulated agents run real processes, whose pids the
commands write to a file, so that a kill is checked on the processes
themselves.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter

import pytest
import pytest_asyncio

from tests.conftest import REPO, alive, read_pids
from tests.fixtures.postgres import fresh_database
from tests.fixtures.replicaset import replica_set

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.asyncio(loop_scope="module")]

N = 300
PATIENT = {"replica_lease": "10", "limbo_after": "10"}
# Low-numbered machines print one line, the others another.
BY_NAME = 'case "$CENTRALITY_MACHINE" in sim-000[0-4]*) echo low;; *) echo high;; esac'
LOW = [f"sim-{i:05d}" for i in range(1, 50)]  # sim-00001..sim-00049
# A process and a child in its process group; both pids go to a file.
TREE = "echo $$ >> {f}; sleep {s} & echo $! >> {f}; wait"


@pytest.fixture(scope="module")
def module_db(postgres_server):
    """A database for the module's replica set, dropped at the end."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rs(tmp_path_factory, module_db):
    # Leases and limbo longer than the fixture's: 300 commands at once on a shared 2-core
    # box may starve a renewal for a few seconds, and this module is not about leases.
    async with replica_set(tmp_path_factory.mktemp("replicas"), module_db, 3, **PATIENT) as rs:
        await rs.simulate(N)
        await rs.wait_live(N, timeout="180s")
        await _wait_spread(rs)
        yield rs


async def _wait_spread(rs) -> None:
    """Every machine is held by a replica, and every replica's view has all of them live."""
    deadline = time.monotonic() + 60
    while True:
        held = rs.holders()
        views = [await rs.cli(i, "exec", "--all", "--dry-run", "--json") for i in range(3)]
        counts = [len(json.loads(out)["machines"]) if status == 0 else 0 for status, out, _ in views]
        if len(held) == N and counts == [N] * 3:
            break
        assert time.monotonic() < deadline, f"held: {len(held)}, live per replica: {counts}"
        await asyncio.sleep(1)
    assert set(held.values()) == {"cp-a", "cp-b", "cp-c"}, Counter(held.values())


def _block(header: str) -> list[str]:
    return ["-" * len(header), header, "-" * len(header)]


async def _audit(rs, i: int = 0) -> list[dict]:
    status, out, err = await rs.cli(i, "audit", "--json", "--limit", "1000")
    assert status == 0, err
    return json.loads(out)


async def test_exec_all_from_each_replica_reaches_every_machine_folded_with_one_audit_row(rs):
    before = len(await _audit(rs))
    for i in range(3):
        status, out, err = await rs.cli(i, "exec", "--all", "--yes", "--fold", "--", "sh", "-c", BY_NAME)
        assert status == 0, err
        assert out.splitlines() == [*_block("sim-[00050-00300] (251)"), "high",
                                    *_block("sim-[00001-00049] (49)"), "low"], out
        assert f"{N} machines: {N} ok" in err

        status, out, err = await rs.cli(i, "exec", "--all", "--yes", "--json", "--", "sh", "-c",
                                        'echo "$CENTRALITY_MACHINE"; exit 3')
        assert status == 3, err
        doc = json.loads(out)
        assert doc["counts"] == {"failed": N} and doc["exit_code"] == 3
        assert {r["machine"]: r["stdout"] for r in doc["results"]} == {f"sim-{n:05d}": f"sim-{n:05d}\n"
                                                                       for n in range(1, N + 1)}
    rows = await _audit(rs)
    assert len(rows) == before + 6, "one audit row per exec, none for the peers' parts"
    for row in rows[:6]:
        assert row["actor"].startswith("operator:") and len(row["results"]) == N
        assert row["status"] == "done" and row["machines_folded"] == f"sim-[00001-00{N}]"


async def test_fanout_and_max_output_reach_the_peers_parts(rs):
    status, out, err = await rs.cli(1, "exec", "--all", "--yes", "--json", "--fanout", "30",
                                    "--max-output", "10", "--", "sh", "-c", "echo 0123456789abcdef")
    assert status == 0, err
    doc = json.loads(out)
    assert {r["stdout"] for r in doc["results"]} == {"0123456789"}
    assert all(r["truncated"] for r in doc["results"])


async def test_gpus_and_health_from_any_replica_answer_for_every_machine_from_its_replica(rs):
    held = rs.holders()
    for i in range(3):
        status, out, err = await rs.cli(i, "gpus", "--json")
        assert status == 0, err
        rows = json.loads(out)
        # Latest values live only on the replica holding the machine: each came from there.
        assert {held[r["machine"]] for r in rows} == {"cp-a", "cp-b", "cp-c"}
        assert all(r["util_percent"] is not None and r["processes"] is not None for r in rows), \
            [r for r in rows if r["util_percent"] is None][:3]
        assert not any("error" in r for r in rows)

        status, out, err = await rs.cli(i, "health", "--json")
        assert status in (0, 1), err
        rows = json.loads(out)
        assert [r["name"] for r in rows] == [f"sim-{n:05d}" for n in range(1, N + 1)]
        assert all(r["checked_at"] and "error" not in r for r in rows)
        remote = next(n for n, r in held.items() if r != rs.replicas[i].name)
        status, out, err = await rs.cli(i, "health", remote, "--json")
        assert [r["name"] for r in json.loads(out)] == [remote]


async def test_a_shell_on_a_machine_held_by_a_peer_is_relayed_through_it(rs):
    held = rs.holders()
    remote = next(n for n, r in held.items() if r == "cp-b")
    status, out, err = await rs.cli(0, "ssh", remote, "--", 'echo "on $CENTRALITY_MACHINE"; exit 4')
    assert (status, out) == (4, f"on {remote}\n"), err


async def _exec_process(rs, i: int, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "exec", *argv, env=rs.env(rs.replicas[i].home), cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
async def test_the_operator_going_away_kills_the_command_on_every_replicas_machines(rs, tmp_path, sig, reap_pids):
    pids = tmp_path / "pids"
    proc = await _exec_process(rs, 0, "--all", "--yes", "--timeout", "5m", "--", "sh", "-c",
                               TREE.format(f=pids, s=120))
    try:
        await _until(lambda: len(read_pids(pids)) == 2 * N, 60, f"the command running on all {N} machines")
        proc.send_signal(sig)
        await asyncio.wait_for(proc.communicate(), 20)
        await _until(lambda: not any(alive(p) for p in read_pids(pids)), 20,
                     "every machine's process group to be killed")
    finally:
        if proc.returncode is None:
            proc.kill()
        reap_pids.extend(read_pids(pids))
    if sig == signal.SIGINT:
        assert proc.returncode == 130
    await _until_audited(rs)
    row = (await _audit(rs))[0]
    assert row["status"] == "cancelled" and row["exit_code"] == 130
    assert set(row["machines"]) == set(rs.holders()) and len(row["results"]) == N
    assert Counter(r["status"] for r in row["results"].values()) == {"cancelled": N}


async def _until_audited(rs) -> None:
    deadline = time.monotonic() + 20
    while (await _audit(rs))[0]["status"] == "running":
        assert time.monotonic() < deadline, "the cancelled exec was never completed in the audit"
        await asyncio.sleep(0.3)


async def test_a_replica_killed_mid_run_reports_its_machines_as_errors_and_the_run_ends(rs, tmp_path, reap_pids):
    """Last: the killed replica's machines move to the others afterwards."""
    held = rs.holders()
    on_c = sorted(n for n, r in held.items() if r == "cp-c")
    assert on_c
    pids = tmp_path / "pids"
    # cp-c's machines would run for two minutes; the others end after a few seconds.
    script = (f'if grep -qx "$CENTRALITY_MACHINE" {tmp_path}/mine; then {TREE.format(f=pids, s=120)}; '
              'else sleep 4; fi')
    (tmp_path / "mine").write_text("\n".join(on_c) + "\n")
    proc = await _exec_process(rs, 0, "--all", "--yes", "--json", "--timeout", "5m", "--", "sh", "-c", script)
    try:
        await _until(lambda: len(read_pids(pids)) == 2 * len(on_c), 60, "cp-c's machines running")
        t0 = time.monotonic()
        await rs.kill(2)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        took = time.monotonic() - t0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 255, err
    assert took < 30
    doc = json.loads(out)
    by_name = {r["machine"]: r for r in doc["results"]}
    assert len(by_name) == N
    assert {by_name[n]["status"] for n in on_c} == {"unreachable"}
    assert all("replica cp-c" in by_name[n]["error"] for n in on_c)
    assert {r["status"] for n, r in by_name.items() if n not in on_c} == {"ok"}
    assert set(doc["replicas_failed"]) == {"cp-c"}
    row = (await _audit(rs))[0]
    assert row["exit_code"] == 255 and Counter(r["status"] for r in row["results"].values()) == {
        "ok": N - len(on_c), "unreachable": len(on_c)}
    # Their agents lost their replica: the commands it ran for them are killed too.
    try:
        await _until(lambda: not any(alive(p) for p in read_pids(pids)), 20, "cp-c's machines' processes killed")
    finally:
        reap_pids.extend(read_pids(pids))
