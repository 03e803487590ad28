"""``run_as`` in agent.toml: the agent (root here) runs operators' commands, shells and file
copies as that user (``nobody``): ``exec`` reports that user, ``ssh`` gets that user's login
shell (nobody's is nologin, which says so), and ``cp`` writes only where that user may, the
new file belonging to it."""

from __future__ import annotations

import json
import os
import pwd

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs an agent run as root")


async def test_exec_ssh_and_cp_run_as_the_configured_user(control_plane, agents, home, tmp_path):
    nobody = pwd.getpwnam("nobody")
    root = tmp_path / "machine"
    (root / "locked").mkdir(parents=True)
    (root / "open").mkdir(mode=0o777)
    os.chmod(root / "open", 0o777)
    os.chmod(tmp_path, 0o755)
    await agents("cpu01", run_as="nobody", files_root=str(root))

    status, out, err = await cli(home, "exec", "--json", "cpu01", "--", "id", "-un")
    assert status == 0, err
    assert json.loads(out)["results"][0]["stdout"].strip() == "nobody"

    status, out, err = await cli(home, "ssh", "cpu01", "--", "id -un")
    if nobody.pw_shell.endswith("nologin"):  # the login shell of run_as is what runs
        assert status == 1 and "not available" in out
    else:
        assert (status, out) == (0, "nobody\n")

    local = tmp_path / "f.txt"
    local.write_text("data")
    status, out, err = await cli(home, "cp", "--json", str(local), "cpu01:/locked/f.txt")
    assert status == 1
    assert json.loads(out)["machines"]["cpu01"]["refusal"] == "permission"
    assert os.listdir(root / "locked") == []
    status, out, err = await cli(home, "cp", "--json", str(local), "cpu01:/open/f.txt")
    assert status == 0, out
    assert (root / "open" / "f.txt").stat().st_uid == nobody.pw_uid
