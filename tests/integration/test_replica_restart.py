"""A replica killed with SIGKILL and started again at once, under the same name,
while its machines' agents retry: every machine is live again (on it or on a
survivor), each exactly once, and the restart costs each of them one limbo and
one live event (and at most one refusal while the dead replica still held it),
not a storm of duplicates. Real processes, real Postgres."""

from __future__ import annotations

import collections
import json

import pytest

from tests.fixtures.replicaset import replica_set

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 60


@pytest.mark.timeout(240)
async def test_a_replica_killed_and_restarted_rejoins_without_duplicate_machines_or_events(tmp_path,
                                                                                            postgres_db_url):
    async with replica_set(tmp_path, postgres_db_url, 3) as rs:
        await rs.simulate(N)
        await rs.wait_live(N)
        status, out, err = await rs.cli(1, "status", "--json")
        assert status == 0, err
        await rs.kill(1)
        await rs.start(1)
        names = await rs.wait_live(N, i=1, timeout="90s")
        assert len(names) == N == len(set(names))
        status, out, err = await rs.cli(0, "events", "--since", "5m", "--limit", "5000", "--json")
        assert status == 0, err
        per_machine = collections.defaultdict(list)
        for e in json.loads(out):
            per_machine[e["machine"]].append(e["kind"])
        registered = [m for m, kinds in per_machine.items() if "registered" in kinds]
        assert len(registered) == N  # each joined once, under one id
        moved = {m: kinds for m, kinds in per_machine.items() if len(kinds) > 1}
        assert moved, "no machine was on the killed replica"
        for machine, kinds in moved.items():
            # newest first: registered, (refused while the dead replica still held it),
            # moved to limbo once, live again once
            assert kinds[-1] == "registered" and kinds[0] == "reconnected", (machine, kinds)
            assert sum(k in ("disconnected", "replica_lost") for k in kinds) == 1, (machine, kinds)
            assert kinds.count("reconnected") == 1 and kinds.count("registration_refused") <= 1, (machine, kinds)
        status, out, err = await rs.cli(2, "machines", "ls", "--json")
        machines = json.loads(out)
        assert sorted(m["name"] for m in machines) == sorted(names)
        assert {m["state"] for m in machines} == {"live"}
