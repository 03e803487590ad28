"""`centrality provision` from a wheel install (issue 15, item 15): no source tree, no --wheel.

Centrality is installed from its wheel into a fresh venv (with the provision extra, not editable)
and run from outside the source tree. It packs the agent wheel from its own installed files, a real
sshd host gets that wheel, and its agent goes live; a second run finds nothing to change (the packed
wheel has the same bytes)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import REPO, cli_env
from tests.fixtures.venvs import no_source_env
from tests.provision.local_hosts import LocalHost, write_hosts_file

pytestmark = [pytest.mark.sshd, pytest.mark.slow, pytest.mark.timeout(900)]


async def test_provision_from_a_wheel_install(provision_venv, home, control_plane, sshd_factory, prefix_root,
                                              tmp_path):
    host = LocalHost("node-w", sshd_factory("127.0.0.5"), prefix_root / "node-w", groups=["cpu"])
    cache = tmp_path / "cache"
    env = {**no_source_env(cli_env(home)), "XDG_CACHE_HOME": str(cache),
           "CENTRALITY_LOCAL_HOSTS": str(write_hosts_file(tmp_path / "hosts.json", [host]))}
    env.pop("CENTRALITY_AGENT_WHEEL", None)
    inventory = str(REPO / "inventories" / "local.py")

    async def installed(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(provision_venv / "centrality"), *args, env=env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 600)
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await installed("provision", inventory, "--yes", "--wait", "120s", "--json")
    assert code == 0, err
    assert "packing the agent wheel from the installed centrality" in err
    assert "not running from a source tree" not in err
    result = json.loads(out)["hosts"][0]
    assert result["ok"] and result["live"] is True and result["changed"] is True, result
    packed = sorted(cache.glob("centrality/wheels/installed-*/centrality-*.whl"))
    assert [p.name for p in packed] == ["centrality-0.1.0-py3-none-any.whl"]
    assert "node-w" in {n for n, m in control_plane.registry.fleet.machines.items() if m.state.value == "live"}
    # the host runs the installed version: its agent's package files are the operator's
    agent_files = list((prefix_root / "node-w").rglob("site-packages/centrality-0.1.0.dist-info/METADATA"))
    assert agent_files, "the agent's venv on the host has no centrality 0.1.0"

    code, out, err = await installed("provision", inventory, "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["hosts"][0]["changed"] is False  # same bytes: nothing to change
    code, out, err = await installed("deprovision", inventory, "--yes")
    assert code == 0, err
