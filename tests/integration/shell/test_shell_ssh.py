"""``centrality ssh`` end to end: real control plane, real agent, the real CLI on a real PTY.

What a user sees: their keystrokes echoed by the machine's shell, ``stty size``
following a window resize, Ctrl-C interrupting the remote job (not the CLI),
``TERM`` passed on, the remote exit status as the CLI's, and their terminal
back in cooked mode afterwards. Also: piped use without a terminal, OpenSSH's
own client, viewers and agent keys refused, drained machines refused unless
``--force``, an agent too old, and the audit rows.
"""

from __future__ import annotations

import asyncio
import json
import re

import asyncssh
import pytest

from tests.conftest import cli
from tests.integration.shell.conftest import centrality, openssh

PROMPT = "READY> "


async def _shell_ready(term) -> None:
    """Give the login shell a prompt we can wait for, whatever the user's rc files print."""
    import pexpect

    await term.expect(r"[#$>] ")  # the shell's own first prompt: it reads input from now on
    for _ in range(5):
        term.send(f"PS1='{PROMPT[:3]}''{PROMPT[3:]}'\r")  # the echo of this line does not match PROMPT
        if await term.expect([PROMPT, pexpect.TIMEOUT], timeout=5) == 0:
            return
    pytest.fail("no prompt from the remote shell")


async def test_login_shell_on_a_pty_echo_resize_ctrl_c_term_exit_status_and_restore(
        control_plane, agents, spawn, home):
    await agents("cpu01")
    term = spawn(["bash", "--norc", "--noprofile", "-c",
                  " ".join(centrality("ssh", "cpu01")) + "; echo \"status=$?\"; stty -a"],
                 rows=24, cols=80, term="vt220")
    await _shell_ready(term)

    term.send("echo hello-$((6*7))\r")
    await term.expect("hello-42")
    await term.expect(PROMPT)

    term.send("echo term=$TERM tty=$(tty)\r")
    await term.expect(r"term=vt220 tty=/dev/pts/\d+")
    await term.expect(PROMPT)

    term.send("stty size\r")
    await term.expect("24 80")
    await term.expect(PROMPT)
    term.child.setwinsize(40, 132)  # the local terminal changes size: SIGWINCH in the CLI
    for _ in range(50):  # the window change travels CLI -> control plane -> agent
        term.send("stty size\r")
        i = await term.expect(["40 132", "24 80"])
        await term.expect(PROMPT)
        if i == 0:
            break
    else:
        pytest.fail("the remote PTY never got the new window size")

    term.send("sleep 30; echo not-$((1+1))-interrupted\r")
    await asyncio.sleep(0.5)
    term.child.sendcontrol("c")  # goes to the machine: SIGINT for the remote job, not the CLI
    await term.expect(PROMPT, timeout=10)  # well before the 30 s sleep would end
    assert "not-2-interrupted" not in term.before
    term.send("echo still-here\r")
    await term.expect("still-here")
    await term.expect(PROMPT)

    term.send("exit 7\r")
    await term.expect("status=7")
    assert await term.wait() == 0
    modes = term.before
    assert re.search(r"(?<![-\w])icanon\b", modes) and re.search(r"(?<![-\w])echo\b", modes), modes
    assert "-icanon" not in modes  # the CLI put the terminal back in cooked mode


async def test_command_without_a_terminal_pipes_output_and_exit_status(control_plane, agents, home):
    await agents("cpu01")
    status, out, err = await cli(home, "ssh", "cpu01", "--", "echo", "piped-$((2+3));", "tty;", "exit", "3")
    assert status == 3, err
    assert out.splitlines() == ["piped-5", "not a tty"]


async def test_openssh_client_logged_in_as_the_machine_with_a_pty_and_with_a_command(
        control_plane, agents, spawn, home):
    await agents("cpu01")
    term = spawn(openssh(control_plane, home, None, user="cpu01"), term="xterm")  # ssh -p PORT cpu01@HOST
    await _shell_ready(term)
    term.send("echo via-openssh-$((1+1)) $TERM\r")
    await term.expect("via-openssh-2 xterm")
    await term.expect(PROMPT)
    term.send("exit 5\r")
    assert await term.wait() == 5

    # a command, verbatim for the machine's shell (quotes and all), no PTY: it scripts like ssh
    proc = await asyncio.create_subprocess_exec(
        *openssh(control_plane, home, 'echo "a  b"; uname -s; tty; exit 4', user="cpu01"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 4, err
    assert out.decode().splitlines() == ["a  b", "Linux", "not a tty"]

    # the ssh request by its name, as other requests are made: on pipes (a PTY is granted only
    # to a session logged in as the machine; ssh -tt would make that refusal fatal)
    proc = await asyncio.create_subprocess_exec(
        *openssh(control_plane, home, "ssh cpu01 -- echo by-request; tty"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and out.decode().splitlines() == ["by-request", "not a tty"], err


async def _connect_with(control_plane, key, username="operator"):
    host, port = control_plane.address.rsplit(":", 1)
    return await asyncssh.connect(host, int(port), username=username, client_keys=[key], known_hosts=None,
                                  agent_path=None, config=None)


async def test_viewers_and_agent_keys_are_refused(control_plane, agents, home):
    agent = await agents("cpu01")
    viewer = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="vera", role="viewer", public_key=viewer.export_public_key().decode(),
                                     actor="test")
    async with await _connect_with(control_plane, viewer) as conn:
        r = await conn.run("ssh cpu01 -- id", check=False)
    assert r.exit_status == 6
    assert json.loads(r.stderr)["error"] == "forbidden" and r.stdout == ""

    agent_key = asyncssh.read_private_key(str(agent.config_dir / "id_ed25519"))
    async with await _connect_with(control_plane, agent_key, "agent") as conn:
        r = await conn.run("ssh cpu01 -- id", check=False)
    assert r.exit_status == 6 and json.loads(r.stderr)["error"] == "forbidden"

    rows = await _audit(control_plane, home)
    assert not [row for row in rows if row["argv"][:1] == ["ssh"]]  # refused sessions never started


async def _audit(control_plane, home) -> list[dict]:
    status, out, err = await cli(home, "audit", "--json")
    assert status == 0, err
    return json.loads(out)


async def test_drained_needs_force_unknown_and_old_agents_refused_and_audit_rows(control_plane, agents, home):
    await agents("cpu01")
    await agents("cpu02", index=2)
    status, out, err = await cli(home, "machines", "drain", "cpu01", "--reason", "bad DIMM")
    assert status == 0, err

    status, out, err = await cli(home, "ssh", "cpu01", "--", "true")
    assert status == 10 and "cpu01 is drained (bad DIMM)" in err and "--force" in err
    status, out, err = await cli(home, "ssh", "--force", "cpu01", "--", "echo forced")
    assert (status, out) == (0, "forced\n"), err

    status, out, err = await cli(home, "ssh", "nosuch", "--", "true")
    assert status == 9 and "no machine named 'nosuch'" in err

    control_plane.registry.session("cpu02").protocol = (1, 2)  # as an agent from before shell sessions
    status, out, err = await cli(home, "ssh", "cpu02", "--", "true")
    assert status == 10 and "too old" in err and "1.2" in err and "needs 1.3" in err

    status, out, err = await cli(home, "ssh", "cpu01", "--force", "--", "exit 9")
    assert status == 9

    rows = [r for r in await _audit(control_plane, home) if r["argv"][:1] == ["ssh"]]
    assert [(r["argv"], r["exit_code"], r["status"]) for r in rows] == [
        (["ssh", "cpu01", "--", "exit 9"], 9, "done"),
        (["ssh", "cpu01", "--", "echo forced"], 0, "done")]
    for r in rows:
        assert r["actor"].startswith("operator:") and r["machines"] == ["cpu01"]
        assert r["finished_at"] and r["started_at"] <= r["finished_at"]
    assert rows[0]["results"]["cpu01"]["status"] == "failed"


@pytest.mark.parametrize("cp_settings", [{"ssh_record_bytes": 64}], indirect=True)
async def test_recording_is_bounded_and_named_in_the_audit(control_plane, agents, home):
    await agents("cpu01")
    status, out, err = await cli(home, "ssh", "cpu01", "--", "echo start; seq 1 1000")
    assert status == 0, err
    assert out.splitlines()[-1] == "1000"  # the operator sees everything; the recording keeps 64 bytes
    await control_plane.writer.flush()
    row = (await control_plane.db(control_plane.store.audit, limit=1))[0]
    result = row["results"]["cpu01"]
    assert result["recorded_bytes"] == 64 and result["recording_truncated"] is True
    from pathlib import Path
    data = Path(result["recording"]).read_bytes()
    assert data.startswith(b"start\n1\n2\n") and len(data) == 64


async def test_an_agent_answers_an_unknown_kind_with_unsupported_and_stays_connected(control_plane, agents,
                                                                                     home, caplog):
    from tests.conftest import wait_for

    await agents("cpu01")
    session = control_plane.registry.session("cpu01")
    caplog.set_level("WARNING", logger="centrality.agent")
    session.send_bytes(b'{"kind":"shell_teleport","id":"s-1","to":"mars"}\n')  # from a newer control plane
    await wait_for(lambda: "does not support 'shell_teleport'" in caplog.text, what="unsupported")
    status, out, err = await cli(home, "ssh", "cpu01", "--", "echo still-serving")
    assert (status, out) == (0, "still-serving\n"), err
    assert control_plane.registry.session("cpu01") is session  # the same connection
