"""Roles over real SSH: agent keys cannot make operator requests, viewers can
read but not change, revoked keys are disconnected at once. Some checks use the
real OpenSSH client, since operators script the control plane with it."""

from __future__ import annotations

import asyncio
import json
import shutil

import asyncssh
import pytest

from centrality_core import sshlink
from centrality_core.errors import AuthRefused
from tests.conftest import cli, wait_for


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


async def run(cp, key, command, username="someone"):
    conn = await sshlink.connect(cp.address, cp.fingerprint, key, username=username)
    async with conn:
        r = await conn.run(command, check=False, encoding="utf-8")
    return r.exit_status, r.stdout, r.stderr


async def test_agent_key_cannot_make_operator_requests(control_plane, agents):
    a = await agents("agent-01")
    status, out, err = await run(control_plane, a.agent.key, "machines ls")
    assert status == 6 and out == ""
    assert json.loads(err) == {"error": "forbidden", "reason": "agent keys cannot make operator requests"}


async def test_viewer_reads_but_cannot_change(control_plane, home, tmp_path):
    viewer = sshlink.generate_key(tmp_path / "viewer_key")
    status, out, err = await cli(home, "keys", "add", "--role", "viewer", "alice", str(tmp_path / "viewer_key.pub"))
    assert status == 0, err
    assert "viewer" in out and viewer.get_fingerprint("sha256") in out
    status, out, _ = await run(control_plane, viewer, "machines ls --json")
    assert status == 0 and json.loads(out) == []
    for request in ("token create", "machines forget x", "keys revoke alice"):
        status, out, err = await run(control_plane, viewer, request)
        assert status == 6, request
        assert json.loads(err)["error"] == "forbidden" and "viewer keys may only read" in err


async def test_revoked_key_is_disconnected_at_once(control_plane, home, tmp_path):
    key = sshlink.generate_key(tmp_path / "bob")
    assert (await cli(home, "keys", "add", "--role", "operator", "bob", str(tmp_path / "bob.pub")))[0] == 0
    conn = await sshlink.connect(control_plane.address, control_plane.fingerprint, key, username="bob")
    process = await conn.create_process("wait --live 99 --timeout 60s")  # a long request
    status, out, err = await cli(home, "keys", "revoke", "bob")
    assert status == 0, err
    assert "revoked operator key bob" in out
    await asyncio.wait_for(conn.wait_closed(), 5)  # cut off, mid-request
    with pytest.raises(AuthRefused):
        await sshlink.connect(control_plane.address, control_plane.fingerprint, key, username="bob")
    status, out, _ = await cli(home, "keys", "ls", "--all", "--json")
    bob = next(k for k in json.loads(out) if k["name"] == "bob")
    assert bob["revoked_at"] is not None
    del process


async def test_revoking_an_agent_key_disconnects_the_agent(control_plane, agents, home):
    from centrality_core.errors import AuthRefused as Refused

    a = await agents("doomed-01")
    status, out, err = await cli(home, "keys", "revoke", "agent:doomed-01")
    assert status == 0, err
    await wait_for(lambda: control_plane.registry.fleet.get("doomed-01").state.value == "limbo",
                   what="agent cut off")
    with pytest.raises(Refused):  # it may not come back
        await asyncio.wait_for(a.task, 10)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
async def test_plain_openssh_client_scripts_the_control_plane(control_plane, home, tmp_path):
    """`ssh -p PORT HOST machines ls --json` works with OpenSSH and the pinned host key."""
    host_key = control_plane.host_key.export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    host, port = control_plane.address.rsplit(":", 1)
    known.write_text(f"[{host}]:{port} {host_key}\n")
    key = home / ".config/centrality/keys/operator_ed25519"
    base = ["ssh", "-p", port, "-i", str(key), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", host]
    proc = await asyncio.create_subprocess_exec(*base, "machines", "ls", "--json",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out) == []
    proc = await asyncio.create_subprocess_exec(*base, "machines", "show", "nope",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 9
    assert json.loads(err)["error"] == "not_found"


async def test_cli_errors_are_short_with_distinct_exit_codes(control_plane, home):
    status, out, err = await cli(home, "machines", "show", "ghost")
    assert status == 9 and out == ""
    assert err.strip() == "error: no machine named 'ghost'"
    status, _, err = await cli(home, "wait", "--live", "1", "--timeout", "0.5s")
    assert status == 124 and "timed out" in err and "Traceback" not in err
    status, _, err = await cli(home, "--context", "nowhere", "machines", "ls")
    assert status == 3 and "no context named 'nowhere'" in err
    status, _, err = await cli(home, "token", "create", "--ttl", "soon")
    assert status == 2 and "invalid duration" in err


async def test_unreachable_control_plane(home, tmp_path):
    from centrality_core import contexts

    key = sshlink.generate_key(tmp_path / "k")
    contexts.put("gone", contexts.Context(address="127.0.0.1:1", fingerprint="SHA256:x", key=str(tmp_path / "k")))
    status, _, err = await cli(home, "--context", "gone", "status")
    assert status == 4 and "cannot reach 127.0.0.1:1" in err
    del key


async def test_token_create_json_and_join_string(control_plane, home):
    from centrality_core import joinstring

    status, out, err = await cli(home, "token", "create", "--ttl", "10m", "--uses", "3", "--json")
    assert status == 0, err
    t = json.loads(out)
    js = joinstring.decode(t["join"])
    assert js.a == control_plane.address and js.fp == control_plane.fingerprint
    assert t["uses"] == 3
    status, out, _ = await cli(home, "token", "ls", "--json")
    (row,) = json.loads(out)
    assert row["id"] == t["id"] and row["max_uses"] == 3 and "secret" not in json.dumps(row)
    assert js.t.split(".")[1] not in out  # the secret is never shown again


async def test_status_json(control_plane, agents, home):
    await agents("s-01")
    status, out, err = await cli(home, "status", "--json")
    assert status == 0, err
    s = json.loads(out)
    assert s["healthy"] is True and s["agents_connected"] == 1
    assert s["store"]["ok"] is True and s["version"]
    assert s["machines"] == {"live": 1, "limbo": 0, "dead": 0}


async def test_status_reports_unhealthy_store(control_plane, home):
    control_plane.store.engine.dispose()
    control_plane.store.health = lambda: "OperationalError: database is locked"  # a broken store
    status, out, _ = await cli(home, "status", "--json")
    assert status == 1
    s = json.loads(out)
    assert s["healthy"] is False and "database is locked" in s["problems"][0]


async def test_login_saves_a_pinned_context(control_plane, home, tmp_path):
    status, out, err = await cli(home, "login", control_plane.address, "--fingerprint",
                                 control_plane.fingerprint, "--name", "prod")
    assert status == 0, err
    assert "logged in" in out
    status, out, err = await cli(home, "--context", "prod", "machines", "ls", "--json")
    assert status == 0 and json.loads(out) == []
    status, _, err = await cli(home, "login", control_plane.address, "--fingerprint",
                               "SHA256:" + "B" * 43, "--name", "evil")
    assert status == 5 and "host key mismatch" in err
    status, _, err = await cli(home, "--context", "evil", "status")
    assert status == 3  # the failed login saved nothing
