"""The real processes, as a user runs them: `centrality server` and
`centrality agent run` in the foreground, stopped by SIGTERM / Ctrl-C.
Nothing may be left running; state and host key survive a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import psutil
import pytest

from tests.conftest import REPO, cli, cli_env
from tests.fixtures.ports import free_port


_spawned: list = []


@pytest.fixture(autouse=True)
def _reap():
    """Whatever a test started is gone after it, even when the test fails midway."""
    yield
    while _spawned:
        proc = _spawned.pop()
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def spawn(home, *args):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", *args, env=cli_env(home), cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    _spawned.append(proc)
    return proc


async def wait_line(stream, text: str, timeout: float = 20) -> str:
    seen = []
    async def read():
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {text!r}; got:\n{''.join(seen)}")
            seen.append(line)
            if text in line:
                return line
    return await asyncio.wait_for(read(), timeout)


async def stop(proc, sig=signal.SIGTERM, timeout=10) -> int:
    proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), timeout)


async def start_server(home, port, *extra):
    server = await spawn(home, "server", "--listen", f"127.0.0.1:{port}", "--heartbeat-interval", "0.5s",
                         "--limbo-after", "2s", "--dead-after", "30s", *extra)
    await wait_line(server.stderr, "listening on")
    return server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_sigterm_and_ctrl_c_stop_everything(home, tmp_path, sig):
    port = free_port()
    server = await start_server(home, port)
    status, join, err = await cli(home, "token", "create", "--uses", "2")
    assert status == 0, err
    agent_procs = []
    for i in range(2):
        d = tmp_path / f"agent{i}"
        assert (await cli(home, "agent", "join", join.strip(), "--name", f"proc-{i}", "--config-dir", str(d)))[0] == 0
        # Two agents on one host need distinct specs: the second is a simulated machine.
        if i:
            (d / "agent.toml").write_text((d / "agent.toml").read_text().replace('profile = "real"', 'profile = "cpu"'))
        agent_procs.append(await spawn(home, "agent", "run", "--config-dir", str(d)))
    status, out, err = await cli(home, "wait", "--live", "2", "--timeout", "20s", "--json")
    assert status == 0, err
    assert json.loads(out)["machines"] == ["proc-0", "proc-1"]

    pids = [server.pid] + [a.pid for a in agent_procs]
    children = [c for p in pids for c in psutil.Process(p).children(recursive=True)]
    # Stop one agent with the signal: it exits 0 and its machine goes to limbo.
    assert await stop(agent_procs[0], sig) == 0
    status, out, _ = await cli(home, "machines", "ls", "--json")
    states = {m["name"]: m["state"] for m in json.loads(out)}
    assert states == {"proc-0": "limbo", "proc-1": "live"}
    # Stop the control plane: it exits 0, its port is free, the other agent keeps trying.
    assert await stop(server, sig) == 0
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass  # nothing listens any more
    assert await stop(agent_procs[1], sig) == 0
    for p in pids + [c.pid for c in children]:
        assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
    for proc in [server, *agent_procs]:
        err = (await proc.stderr.read()).decode()
        assert "Traceback" not in err, err


async def test_first_start_sets_up_the_user_and_survives_restart(home, tmp_path):
    port = free_port()
    server = await start_server(home, port)
    key = home / ".config/centrality/keys/operator_ed25519"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    assert (home / ".config/centrality/contexts.toml").exists()
    assert (home / ".local/share/centrality/server/centrality.db").exists()
    status, out, _ = await cli(home, "status", "--json")
    fp = json.loads(out)["fingerprint"]
    assert await stop(server) == 0

    server = await start_server(home, port)
    status, out, err = await cli(home, "status", "--json")
    assert status == 0, err
    assert json.loads(out)["fingerprint"] == fp  # host key kept across restarts
    assert await stop(server) == 0

    other_home = tmp_path / "other"
    other_home.mkdir()
    status, _, err = await cli(other_home, "status")
    assert status == 3 and "no control plane configured" in err  # another HOME, another installation


async def test_server_refuses_bad_settings(home):
    proc = await spawn(home, "server", "--limbo-after", "1s", "--heartbeat-interval", "5s")
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"heartbeat-interval < limbo-after" in err and b"Traceback" not in err


async def test_server_reports_a_busy_port(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = await spawn(home, "server", "--listen", f"127.0.0.1:{port}")
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}".encode() in err


async def test_postgres_backed_server(home, postgres_db_url):
    port = free_port()
    server = await start_server(home, port, "--db", postgres_db_url)
    status, out, err = await cli(home, "status", "--json")
    assert status == 0, err
    assert json.loads(out)["store"]["backend"] == "postgresql"
    assert await stop(server) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
async def test_agent_run_keeps_only_the_agent_in_memory(home, tmp_path):
    """`centrality agent run` parses its arguments with the CLI, then the same process (same
    pid: what systemd and the supervisor loop watch) holds the agent alone: none of the CLI's
    libraries (typer, pydantic through typer's coercion, rich) stay loaded, which is ~12 MB of
    its RSS. It still logs as the CLI does and stops with status 0 on SIGTERM."""
    port = free_port()
    server = await start_server(home, port)
    status, join, err = await cli(home, "token", "create", "--uses", "1")
    assert status == 0, err
    d = tmp_path / "agent"
    assert (await cli(home, "agent", "join", join.strip(), "--name", "lean", "--config-dir", str(d)))[0] == 0
    agent = await spawn(home, "-v", "agent", "run", "--config-dir", str(d))
    line = await wait_line(agent.stderr, "registered as lean")
    assert " INFO centrality.agent: registered as lean (new machine)" in line
    maps = open(f"/proc/{agent.pid}/maps").read()
    assert "pydantic_core" not in maps
    proc = psutil.Process(agent.pid)
    assert "centrality_cli.agent_process" in proc.cmdline()
    assert " agent run " in " ".join(proc.cmdline())  # what `ps` and `pgrep -f "agent run"` find
    assert proc.memory_info().rss < 100 * 2**20  # it was ~60 MB; ~48 MB now on Linux
    assert await stop(agent) == 0
    assert await stop(server) == 0


async def test_agent_run_error_is_one_line_and_its_exit_code(home, tmp_path):
    """A fatal error of the agent process reads as every CLI error: `error: ...`, its exit code."""
    agent = await spawn(home, "agent", "run", "--config-dir", str(tmp_path / "nothing-here"))
    out, err = await asyncio.wait_for(agent.communicate(), 30)
    assert agent.returncode == 3
    assert err.decode().strip() == (f"error: no agent configuration in {tmp_path / 'nothing-here'}: "
                                    "run `centrality agent join JOIN_STRING` first")
