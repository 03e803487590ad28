"""``centrality cp`` end to end: real control plane, real agents (each with its own files_root,
as simulated machines sharing one host), the real CLI.

Push to 50 machines and verify every copy's bytes, mode and the absence of
temporary files; gather back into LOCALDIR/<machine>/; a tree with -r;
hostile paths (.., a symlink as the file, a symlink directory in the tree, a
symlink out of files_root) refused with nothing written outside; the audit row;
the worst-of exit code; skipped machines listed.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.conftest import cli, wait_for

# 50 agents share the test's event loop with the control plane on a busy box: lenient heartbeats
LONG_LIMBO = {"heartbeat_interval": 0.5, "limbo_after": 5.0, "dead_after": 60.0, "exec_confirm_above": 100}


async def files_fleet(agents, tmp_path, names: list[str], subdir: str = "etc") -> dict:
    """Agents named ``names``, each with its own files root holding ``subdir``: name -> root."""
    roots = {}
    for i, name in enumerate(names, 1):
        root = tmp_path / "machines" / name
        (root / subdir).mkdir(parents=True)
        roots[name] = root
        await agents(name, index=i, files_root=str(root), sample_interval=5.0, batch_interval=5.0)
    return roots


async def _fleet(agents, tmp_path, n: int):
    return await files_fleet(agents, tmp_path, [f"node{i:02d}" for i in range(1, n + 1)])


@pytest.mark.parametrize("cp_settings", [LONG_LIMBO], indirect=True)
async def test_push_to_50_machines_verified_then_gather_back(control_plane, agents, home, tmp_path):
    roots = await _fleet(agents, tmp_path, 50)
    gone = await agents("node99", index=99)
    await gone.stop()
    await wait_for(lambda: control_plane.registry.fleet.get("node99").state.value == "limbo", what="limbo")

    payload = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a multiple of one
    local = tmp_path / "nccl.conf"
    local.write_bytes(payload)
    local.chmod(0o640)
    status, out, err = await cli(home, "cp", "--json", str(local), "node[01-50]", "node99:/etc/nccl.conf",
                                 timeout=120)
    assert status == 0, (err, [m for m in json.loads(out)["machines"].values() if m["status"] != "ok"][:3])
    doc = json.loads(out)
    assert doc["exit_code"] == 0 and doc["counts"] == {"ok": 50}
    assert doc["skipped"] == [{"machine": "node99", "reason": "limbo"}]
    digest = hashlib.sha256(payload).hexdigest()
    for name, root in roots.items():
        f = root / "etc" / "nccl.conf"
        assert f.read_bytes() == payload, name
        assert f.stat().st_mode & 0o777 == 0o640
        assert os.listdir(root / "etc") == ["nccl.conf"]  # no temporary file left
        assert doc["machines"][name]["sha256"] == digest and doc["machines"][name]["bytes"] == len(payload)

    # every machine's own file comes back into LOCALDIR/<machine>/
    for name, root in roots.items():
        (root / "etc" / "hostname").write_text(f"{name}\n")
    dest = tmp_path / "gathered"
    status, out, err = await cli(home, "cp", "node[01-50]:/etc/hostname", str(dest), timeout=120)
    assert status == 0, err
    assert "50 machines: 50 ok" in err
    assert sorted(os.listdir(dest)) == sorted(roots)
    for name in roots:
        assert (dest / name / "hostname").read_text() == f"{name}\n"
        assert os.listdir(dest / name) == ["hostname"]

    status, out, err = await cli(home, "audit", "--json")
    rows = [r for r in json.loads(out) if r["argv"][:1] == ["cp"]]
    assert [r["argv"] for r in rows] == [["cp", "get", "/etc/hostname"], ["cp", "put", "/etc/nccl.conf"]]
    assert all(r["exit_code"] == 0 and len(r["machines"]) == 50 and r["status"] == "done" for r in rows)
    assert rows[1]["skipped"] == [{"machine": "node99", "reason": "limbo"}]


async def test_tree_with_r_and_mode_override(control_plane, agents, home, tmp_path):
    roots = await _fleet(agents, tmp_path, 2)
    tree = tmp_path / "conf"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "deeper" / "b.txt").write_text("B" * 100_000)
    (tree / "empty.txt").write_text("")
    status, out, err = await cli(home, "cp", "-r", "--mode", "600", str(tree), "node[01-02]:/etc/")
    assert status == 0, err
    for root in roots.values():
        got = root / "etc" / "conf"
        assert (got / "a.txt").read_text() == "A" and (got / "empty.txt").read_text() == ""
        assert (got / "sub" / "deeper" / "b.txt").read_text() == "B" * 100_000
        assert (got / "a.txt").stat().st_mode & 0o777 == 0o600


async def test_hostile_paths_are_refused_and_nothing_is_written_outside(control_plane, agents, home, tmp_path):
    roots = await _fleet(agents, tmp_path, 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("untouched")
    r1, r2, r3 = roots.values()
    (r1 / "etc" / "passwd").symlink_to(victim)          # the file itself is a symlink out
    (r2 / "etc" / "link").symlink_to(outside)           # a directory symlink out of files_root
    local = tmp_path / "payload"
    local.write_text("evil")

    status, out, err = await cli(home, "cp", "--json", str(local), "node01:/etc/passwd")
    assert status == 0, err  # replaced the symlink itself (renamed over it), never wrote through it
    assert victim.read_text() == "untouched" and not (r1 / "etc" / "passwd").is_symlink()
    assert (r1 / "etc" / "passwd").read_text() == "evil"

    status, out, err = await cli(home, "cp", "--json", str(local), "node02:/etc/link/victim")
    assert status == 1
    doc = json.loads(out)["machines"]["node02"]
    assert doc["status"] == "failed" and doc["refusal"] == "symlink"
    assert victim.read_text() == "untouched"

    status, out, err = await cli(home, "cp", "--json", str(local), "node03:/etc/../../outside/victim")
    assert status == 1 and json.loads(out)["machines"]["node03"]["refusal"] == "traversal"
    assert victim.read_text() == "untouched"

    # gathering through a symlink is refused too, and a missing file fails that machine only
    (r3 / "etc" / "shadow").symlink_to(victim)
    (r2 / "etc" / "shadow").write_text("fine")
    dest = tmp_path / "got"
    status, out, err = await cli(home, "cp", "--json", "node[01-03]:/etc/shadow", str(dest))
    assert status == 1
    machines = json.loads(out)["machines"]
    assert machines["node02"]["status"] == "ok" and (dest / "node02" / "shadow").read_text() == "fine"
    assert machines["node03"]["refusal"] == "symlink" and not (dest / "node03" / "shadow").exists()
    assert machines["node01"]["refusal"] == "not_found"


async def test_an_upload_written_before_the_request_reads_it_arrives_whole(control_plane, agents, operator,
                                                                          tmp_path):
    """A client that writes its whole upload at once, before the request has started (stdin kept
    in order until the request reads it), e.g. a script over plain SSH."""
    roots = await _fleet(agents, tmp_path, 1)
    data = os.urandom(200_000)
    header = json.dumps({"rel": "x.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                         "mode": 0o600}).encode() + b"\n"
    process = await operator.connection.create_process("cp put node01 -- /etc/x.bin", encoding=None)
    process.stdin.write(header + data)
    process.stdin.write_eof()
    raw = [line async for line in process.stdout]
    lines = [json.loads(line) for line in raw if line.strip()]
    result = await process.wait()
    assert result.exit_status == 0, (result.stderr, raw)
    assert lines[-1]["type"] == "summary" and lines[-1]["counts"] == {"ok": 1}
    assert (roots["node01"] / "etc" / "x.bin").read_bytes() == data


async def test_viewers_cannot_copy_either_way(control_plane, agents, tmp_path):
    import asyncssh

    await _fleet(agents, tmp_path, 1)
    viewer = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="vera", role="viewer", public_key=viewer.export_public_key().decode(),
                                     actor="test")
    host, port = control_plane.address.rsplit(":", 1)
    async with asyncssh.connect(host, int(port), username="operator", client_keys=[viewer], known_hosts=None,
                                agent_path=None, config=None) as conn:
        for request in ("cp put node01 -- /etc/x", "cp get node01 -- /etc/hostname"):
            r = await conn.run(request, input="", check=False)
            assert r.exit_status == 6 and json.loads(r.stderr)["error"] == "forbidden", request
