"""The control plane and an agent from ``pip install 'centrality.whl[server]'`` in a fresh venv,
run from outside the source tree as a user runs them: the server's first start, a join token,
an agent joining and going live, ``status`` and ``machines ls`` answering, both stopping cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.venvs import no_source_env
from tests.fixtures.ports import free_port


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_server_and_agent_from_a_wheel_install(server_venv, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = no_source_env({k: v for k, v in os.environ.items() if not k.startswith("CENTRALITY_")})
    env["HOME"] = str(home)
    centrality = str(server_venv / "centrality")

    where = subprocess.run([str(server_venv / "python"), "-c", "import control_plane, agent_runtime; "
                            "print(control_plane.__file__); print(agent_runtime.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(server_venv.parent)) for line in where.stdout.split()), where.stdout

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([centrality, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=60)

    port = free_port()
    procs = []

    async def spawn(*args: str):
        proc = await asyncio.create_subprocess_exec(centrality, *args, cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        server = await spawn("server", "--listen", f"127.0.0.1:{port}", "--heartbeat-interval", "0.5s",
                             "--limbo-after", "2s", "--dead-after", "30s")
        seen = []
        while not any("listening on" in line for line in seen):
            line = (await asyncio.wait_for(server.stderr.readline(), 60)).decode()
            assert line, "the server ended before listening:\n" + "".join(seen)
            seen.append(line)

        token = run("token", "create", "--uses", "1")
        assert token.returncode == 0, token.stderr
        cfg = tmp_path / "agent"
        joined = run("agent", "join", token.stdout.strip(), "--name", "wheel-01", "--config-dir", str(cfg))
        assert joined.returncode == 0, joined.stderr
        agent = await spawn("agent", "run", "--config-dir", str(cfg))

        live = run("wait", "--live", "1", "--timeout", "30s", "--json")
        assert live.returncode == 0, live.stderr
        assert json.loads(live.stdout)["machines"] == ["wheel-01"]
        ls = run("machines", "ls", "--json")
        assert ls.returncode == 0, ls.stderr
        (row,) = json.loads(ls.stdout)
        assert row["name"] == "wheel-01" and row["state"] == "live"
        status = run("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["machines"]["live"] == 1

        # a shared connection (CENTRALITY_PERSIST): its master runs from the installed package too
        runtime = tempfile.mkdtemp(prefix="centrality-rt-")
        try:
            shared = {**env, "CENTRALITY_PERSIST": "5m", "XDG_RUNTIME_DIR": runtime}
            for _ in range(30):
                ls = subprocess.run([centrality, "machines", "ls", "--json"], capture_output=True, text=True,
                                    cwd=tmp_path, env=shared, timeout=60)
                assert ls.returncode == 0 and json.loads(ls.stdout)[0]["name"] == "wheel-01", ls.stderr
                if any(p.is_socket() for p in Path(runtime, "centrality").iterdir()):
                    break
                await asyncio.sleep(0.2)
            ls = subprocess.run([centrality, "machines", "ls", "--json"], capture_output=True, text=True,
                                cwd=tmp_path, env=shared, timeout=60)  # through the master
            assert ls.returncode == 0 and json.loads(ls.stdout)[0]["name"] == "wheel-01", ls.stderr
            closed = subprocess.run([centrality, "disconnect"], capture_output=True, text=True, cwd=tmp_path,
                                    env=shared, timeout=60)
            assert closed.stdout.strip() == "shared connection closed", (closed.stdout, closed.stderr)
        finally:
            shutil.rmtree(runtime, ignore_errors=True)

        for proc in (agent, server):
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            err = (await proc.stderr.read()).decode()
            assert "Traceback" not in err, err
    finally:
        for proc in procs:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
