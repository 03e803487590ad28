"""``exec`` over real SSH: real control plane, real agents, the real CLI in a subprocess.

Covers: a hostlist with a machine in limbo (skipped and reported), folded
output, the worst-of exit code, per-machine JSON, the audit row, timeout and
Ctrl-C killing the remote process group, a machine lost mid-command, roles and
the confirmation threshold.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from tests.conftest import REPO, cli, cli_env, wait_for
from tests.conftest import alive, read_pids
from tests.integration.exec.conftest import BOTH_STORES

# gpu02 fails with 3, the others print the same line.
BY_MACHINE = ('case "$CENTRALITY_MACHINE" in gpu02) echo "ECC error on GPU 3"; exit 3;; '
              '*) echo "8 GPUs ok";; esac')
# A process and a child in its process group; both pids go to a file.
TREE = "echo $$ >> {f}; sleep 60 & echo $! >> {f}; wait"

LONG_LIMBO = {"dead_after": 60.0}


async def _fleet(agents, n: int, limbo: str | None = None):
    running = [await agents(f"gpu{i:02d}", index=i) for i in range(1, n + 1)]
    if limbo:
        gone = await agents(limbo, index=99)
        await gone.stop()
    return running


async def _exec(operator, *argv: str) -> list[dict]:
    return [line async for line in operator.stream("exec", *argv, check=False)]


@BOTH_STORES
@pytest.mark.parametrize("cp_settings", [LONG_LIMBO], indirect=True)
async def test_hostlist_with_limbo_folded_worst_exit_json_and_audit(control_plane, agents, home):
    await _fleet(agents, 3, limbo="gpu04")
    await wait_for(lambda: control_plane.registry.fleet.get("gpu04").state.value == "limbo", what="limbo")

    status, out, err = await cli(home, "exec", "--fold", "gpu[01-05]", "--", "sh", "-c", BY_MACHINE)
    assert status == 3, err  # the worst of all machines
    assert out.splitlines() == ["---------------", "gpu[01,03] (2)", "---------------", "8 GPUs ok",
                                "---------------", "gpu02 (1)", "---------------", "ECC error on GPU 3"]
    assert "skipped gpu04: limbo (1)" in err
    assert "unknown: gpu05" in err
    assert "gpu02: exit 3" in err
    assert "3 machines: 2 ok, 1 failed" in err

    status, out, err = await cli(home, "exec", "--json", "gpu[01-04]", "--", "sh", "-c", BY_MACHINE)
    assert status == 3, err
    doc = json.loads(out)
    assert doc["exit_code"] == 3 and doc["machines"] == ["gpu01", "gpu02", "gpu03"]
    assert doc["skipped"] == [{"machine": "gpu04", "reason": "limbo"}]
    by_name = {r["machine"]: r for r in doc["results"]}
    assert by_name["gpu02"]["stdout"] == "ECC error on GPU 3\n" and by_name["gpu02"]["exit_code"] == 3
    assert by_name["gpu01"]["stdout"] == "8 GPUs ok\n" and by_name["gpu01"]["status"] == "ok"
    assert all(r["stderr"] == "" and 0 <= r["duration"] < 5 for r in doc["results"])

    # streaming (the default): each line prefixed by its machine as it arrives
    status, out, err = await cli(home, "exec", "gpu0[1-2]", "--", "sh", "-c", "echo one; echo two >&2")
    assert status == 0, err
    assert sorted(out.splitlines()) == ["gpu01: one", "gpu02: one"]
    assert "gpu01: two" in err and "2 machines: 2 ok" in err

    status, out, err = await cli(home, "audit", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert len(rows) == 3
    first = rows[-1]  # newest first
    assert first["actor"].startswith("operator:") and first["argv"] == ["sh", "-c", BY_MACHINE]
    assert first["selector"] == "gpu[01-05]" and first["machines"] == ["gpu01", "gpu02", "gpu03"]
    assert first["skipped"] == [{"machine": "gpu04", "reason": "limbo"}]
    assert first["status"] == "done" and first["exit_code"] == 3
    assert {n: r["exit_code"] for n, r in first["results"].items()} == {"gpu01": 0, "gpu02": 3, "gpu03": 0}
    status, out, _ = await cli(home, "audit")
    assert "sh -c" in out and "gpu[01-03] (3)" in out and "2 ok, 1 failed" in out


async def test_timeout_kills_the_remote_process_group(control_plane, agents, home, tmp_path, reap_pids):
    await _fleet(agents, 1)
    pids = tmp_path / "pids"
    status, out, err = await cli(home, "exec", "--timeout", "1s", "gpu01", "--", "sh", "-c", TREE.format(f=pids))
    reap_pids.extend(read_pids(pids))
    assert status == 124, err
    assert "gpu01: timed out after 1s\n" in err  # not "timed out (timed out after 1s)"
    assert len(read_pids(pids)) == 2 and not any(alive(pid) for pid in read_pids(pids))


async def test_ctrl_c_cancels_everywhere(control_plane, agents, home, tmp_path, reap_pids, operator):
    await _fleet(agents, 2)
    pids = tmp_path / "pids"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", "exec", "gpu[01-02]", "--", "sh", "-c", TREE.format(f=pids),
        env=cli_env(home), cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: len(read_pids(pids)) == 4, timeout=15, what="both machines running")
        reap_pids.extend(read_pids(pids))
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    await wait_for(lambda: not any(alive(pid) for pid in read_pids(pids)), timeout=5,
                   what="the remote process groups to be killed")
    (row,) = await operator.request("audit")
    assert row["status"] == "cancelled" and row["exit_code"] == 130
    assert {r["status"] for r in row["results"].values()} == {"cancelled"}
    assert not control_plane.commands.runs


async def test_machine_lost_mid_command_is_unreachable(control_plane, agents, operator, tmp_path, reap_pids):
    a, b = await _fleet(agents, 2)
    pids = tmp_path / "pids"
    stream = asyncio.ensure_future(_exec(operator, "gpu[01-02]", "--", "sh", "-c",
                                         f'if [ "$CENTRALITY_MACHINE" = gpu01 ]; then {TREE.format(f=pids)}; fi'))
    await wait_for(lambda: len(read_pids(pids)) == 2, what="gpu01 running")
    reap_pids.extend(read_pids(pids))
    a.drop()  # the agent's connection goes away mid-command
    lines = await asyncio.wait_for(stream, 10)
    exits = {l["machine"]: l for l in lines if l["type"] == "exit"}
    assert exits["gpu01"]["status"] == "unreachable" and exits["gpu01"]["code"] == 255
    assert exits["gpu02"]["status"] == "ok"
    assert lines[-1]["type"] == "summary" and lines[-1]["exit_code"] == 255
    # the agent ends what ran for the connection it lost
    await wait_for(lambda: not any(alive(pid) for pid in read_pids(pids)), timeout=5, what="killed on disconnect")


async def test_fanout_output_bounds_and_dry_run(control_plane, agents, operator):
    await _fleet(agents, 3)
    lines = await _exec(operator, "--fanout", "1", "--max-output", "100", "gpu*", "--",
                        "sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; sleep 0.2")
    exits = [l for l in lines if l["type"] == "exit"]
    assert [e["machine"] for e in exits] == ["gpu01", "gpu02", "gpu03"]  # one at a time, in order
    assert all(e["truncated"] and e["status"] == "ok" for e in exits)
    for name in ("gpu01", "gpu02", "gpu03"):
        assert sum(len(l["data"]) for l in lines if l["type"] == "output" and l["machine"] == name) == 100
    assert lines[-1]["duration"] >= 0.6  # 3 x 0.2 s, not in parallel

    dry = await operator.request("exec", "--dry-run", "gpu[01-09]", "--", "true")
    assert dry["machines"] == ["gpu01", "gpu02", "gpu03"] and dry["unknown"] == ["gpu[04-09]"]
    (row,) = await operator.request("audit")  # the dry run is not audited
    assert row["argv"][0] == "sh" and row["status"] == "done"


@pytest.mark.parametrize("cp_settings", [{"exec_confirm_above": 1}], indirect=True)
async def test_viewers_cannot_exec_and_many_machines_need_yes(control_plane, agents, home, tmp_path):
    from centrality_core import sshlink

    await _fleet(agents, 2)
    status, out, err = await cli(home, "exec", "gpu*", "--", "true")
    assert status == 2 and "would run on 2 machines, more than 1" in err and "--yes" in err
    status, out, err = await cli(home, "exec", "--yes", "gpu*", "--", "true")
    assert status == 0 and "2 machines: 2 ok" in err
    status, out, err = await cli(home, "exec", "--dry-run", "gpu*")
    assert status == 0 and out.strip() == "would run on 2 machines: gpu[01-02]"

    viewer = sshlink.generate_key(tmp_path / "viewer")
    assert (await cli(home, "keys", "add", "--role", "viewer", "v", str(tmp_path / "viewer.pub")))[0] == 0
    conn = await sshlink.connect(control_plane.address, control_plane.fingerprint, viewer, username="v")
    async with conn:
        r = await conn.run("exec --yes gpu01 -- true", check=False, encoding="utf-8")
        assert r.exit_status == 6 and json.loads(r.stderr)["error"] == "forbidden"
        r = await conn.run("machines drain --reason x gpu01", check=False, encoding="utf-8")
        assert r.exit_status == 6
        for read in ("audit", "health"):
            r = await conn.run(read, check=False, encoding="utf-8")
            assert r.exit_status == 0, (read, r.stderr)


async def test_stopping_the_agent_kills_its_running_commands(control_plane, agents, operator, tmp_path, reap_pids):
    (a,) = await _fleet(agents, 1)
    pids = tmp_path / "pids"
    stream = asyncio.ensure_future(_exec(operator, "gpu01", "--", "sh", "-c", TREE.format(f=pids)))
    await wait_for(lambda: len(read_pids(pids)) == 2, what="running")
    reap_pids.extend(read_pids(pids))
    await a.stop()  # SIGTERM/Ctrl-C of `centrality agent run` does this
    assert not any(alive(pid) for pid in read_pids(pids))
    lines = await asyncio.wait_for(stream, 10)
    assert lines[-1]["exit_code"] == 255 and lines[-1]["counts"] == {"unreachable": 1}
