"""Provisioning for real: sshd test hosts on 127.0.0.x, pyinfra over SSH, a real control plane.

One scenario, in the order an operator lives it, on ``inventories/local.py``:
a dry run changes nothing; provisioning makes both good hosts' agents live (with
their inventory groups as labels) and reports the wrong-key and the unreachable
host in one line each; a second run changes nothing and says so; a host that
changes group gets its new label; deprovision stops the agents, removes them and
revokes their keys; a second deprovision has nothing left to do.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.fixtures.sshd import free_port
from tests.provision.conftest import processes_under, run_cli
from tests.provision.local_hosts import LocalHost, write_hosts_file

pytestmark = [pytest.mark.sshd, pytest.mark.slow, pytest.mark.timeout(300)]

INVENTORY = "inventories/local.py"


def by_host(doc: dict) -> dict[str, dict]:
    return {h["host"]: h for h in doc["hosts"]}


def supervisor_pid(prefix: Path) -> str:
    return (prefix / "run" / "agent.pid").read_text().strip()


async def test_provision_rerun_and_deprovision(home, control_plane, sshd_factory, prefix_root, agent_wheel,
                                               tmp_path):
    a, b, c = sshd_factory("127.0.0.2"), sshd_factory("127.0.0.3"), sshd_factory("127.0.0.4")
    hosts = [
        LocalHost("node-a", a, prefix_root / "node-a", groups=["gpu"]),
        LocalHost("node-b", b, prefix_root / "node-b", groups=["cpu"]),
        # A real sshd that does not authorise the key we give it.
        LocalHost("bad-key", c, prefix_root / "bad-key", groups=["cpu"], key=a.client_key_path),
        # Nothing listens there.
        LocalHost("gone", c, prefix_root / "gone", groups=["cpu"], port=free_port("127.0.0.4")),
    ]
    env = {"CENTRALITY_LOCAL_HOSTS": str(write_hosts_file(tmp_path / "hosts.json", hosts))}
    wheel = ["--wheel", str(agent_wheel)]

    async def centrality(*args: str) -> tuple[int, str, str]:
        return await run_cli(home, *args, env=env)

    # 1. --dry shows what would change and changes nothing.
    code, out, err = await centrality("provision", INVENTORY, "--dry", "--limit", "gpu", *wheel)
    assert code == 0, err
    assert "would change" in out and "Join the control plane" in out
    assert "dry run: 1 of 1 host(s) would change; nothing was changed" in out
    assert not (prefix_root / "node-a").exists()

    # Without --yes and without a terminal, nothing is changed either.
    code, out, err = await centrality("provision", INVENTORY, "--limit", "node-a", *wheel)
    assert code == 2, (out, err)
    assert "pass --yes" in err
    assert not (prefix_root / "node-a").exists()

    # 2. Provision: both good hosts go live; the two bad ones fail with one clear line each.
    code, out, err = await centrality("provision", INVENTORY, "--yes", "--wait", "90s", "--json", *wheel)
    assert code == 1, err  # some hosts failed
    doc = json.loads(out)
    results = by_host(doc)
    for name in ("node-a", "node-b"):
        assert results[name]["ok"], (results[name], err)
        assert results[name]["live"] is True
        assert results[name]["changed"] is True
        assert "Join the control plane" in results[name]["changes"]
    assert results["bad-key"]["ok"] is False
    assert results["bad-key"]["reason"].startswith("auth failed: ")
    assert f"{c.host}:{c.port}" in results["bad-key"]["reason"]
    assert results["gone"]["reason"].startswith("unreachable: ")
    assert "connection refused" in results["gone"]["reason"]
    assert all("\n" not in h["reason"] for h in doc["hosts"])
    assert "step" in err and "agent live" in err  # progress went to stderr

    machines = {m["name"]: m for m in control_plane_rows(await centrality("machines", "ls", "--json"))}
    assert machines["node-a"]["state"] == "live" and machines["node-b"]["state"] == "live"
    assert machines["node-a"]["labels"] == {"gpu": "true", "local": "true"}
    assert machines["node-b"]["labels"] == {"cpu": "true", "local": "true"}
    assert "bad-key" not in machines and "gone" not in machines
    # Each host got its own key, generated there; the private key never left the host.
    for h in ("node-a", "node-b"):
        cfg = prefix_root / h / "etc" / "agent"
        assert (cfg / "id_ed25519").stat().st_mode & 0o077 == 0
        assert "join_token = \"\"" in (cfg / "agent.toml").read_text()  # used once, then dropped
    pids = {h: supervisor_pid(prefix_root / h) for h in ("node-a", "node-b")}

    # 3. A second run changes nothing, and says so; the agents were not restarted.
    code, out, err = await centrality("provision", INVENTORY, "--yes", "--wait", "60s", *wheel)
    assert code == 1, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for h in ("node-a", "node-b"):
        assert "unchanged" in lines[h] and "live" in lines[h] and lines[h].rstrip().endswith("ok")
    assert "auth failed:" in lines["bad-key"]
    assert "unreachable:" in lines["gone"]
    assert "nothing changed: 2 host(s) already provisioned, 2 agent(s) live; 2 failed" in out
    assert {h: supervisor_pid(prefix_root / h) for h in ("node-a", "node-b")} == pids

    # A host moved to another group: its labels follow, and its agent restarts with them.
    hosts[1].groups = ["cpu", "eval"]
    write_hosts_file(tmp_path / "hosts.json", hosts)
    code, out, err = await centrality("provision", INVENTORY, "--yes", "--limit", "node-b", "--json", *wheel)
    assert code == 0, err
    result = by_host(json.loads(out))["node-b"]
    assert result["changes"] == ["Set the machine name and labels", "Restart the agent"], result
    assert result["live"] is True
    want = {"cpu": "true", "eval": "true", "local": "true"}
    for _ in range(30):  # the restarted agent brings the new label when it registers again
        machines = {m["name"]: m for m in control_plane_rows(await centrality("machines", "ls", "--json"))}
        if machines["node-b"]["labels"] == want and machines["node-b"]["state"] == "live":
            break
        await asyncio.sleep(0.5)
    assert machines["node-b"]["labels"] == want

    code, out, err = await centrality("provision", INVENTORY, "--yes", "--limit", "no-such-group", *wheel)
    assert code == 2 and "--limit no-such-group: no host or group" in err

    # 4. Deprovision: agents stopped and removed, keys revoked, machines dead.
    code, out, err = await centrality("deprovision", INVENTORY, "--yes", "--limit", "gpu", "--limit", "cpu",
                                      "--json")
    assert code == 1, err  # the two bad hosts still cannot be reached
    results = by_host(json.loads(out))
    for h in ("node-a", "node-b"):
        assert results[h]["ok"] and results[h]["changed"] and results[h]["key"] == "revoked", results[h]
        assert not (prefix_root / h).exists()
    assert processes_under(prefix_root) == []
    keys = control_plane_rows(await centrality("keys", "ls", "--json"))
    assert not [k for k in keys if k["name"] in ("agent:node-a", "agent:node-b")]
    machines = {m["name"]: m for m in control_plane_rows(await centrality("machines", "ls", "--json"))}
    assert machines["node-a"]["state"] == "dead" and machines["node-b"]["state"] == "dead"

    # ...and a second deprovision has nothing left to do.
    code, out, err = await centrality("deprovision", INVENTORY, "--yes", "--limit", "node-*")
    assert code == 0, (out, err)
    assert "nothing changed: no agent left to remove on 2 host(s)" in out


def control_plane_rows(result: tuple[int, str, str]) -> list[dict]:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def test_local_inventory_needs_its_hosts_file(tmp_path, monkeypatch):
    """inventories/local.py says what is missing instead of provisioning nothing."""
    import runpy

    monkeypatch.setenv("CENTRALITY_LOCAL_HOSTS", str(tmp_path / "missing.json"))
    with pytest.raises(SystemExit, match="start local test hosts first"):
        runpy.run_path(str(Path(__file__).parents[2] / INVENTORY))
