"""`pip install centrality` without extras (issue 15, item 14): every command either works or says
which extra to install, never a traceback. The wheel is installed into a fresh venv and run from
outside the source tree, against a real control plane."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import cli_env, wait_for
from tests.fixtures.venvs import no_source_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def run_installed(bin_dir, home, cwd, *args, timeout=60):
    env = no_source_env(cli_env(home))
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "centrality"), *args, env=env, cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def gather_limited(runs, limit: int = 4) -> list:
    """The results of ``runs`` (coroutines), in order, at most ``limit`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def one(run):
        async with gate:
            return await run

    return await asyncio.gather(*(one(r) for r in runs))


def command_paths() -> list[list[str]]:
    import typer

    from centrality_cli.main import app

    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", {})
        if not subs:
            out.append(path)
        for name, sub in subs.items():
            walk(sub, path + [name])

    walk(typer.main.get_command(app), [])
    return out


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


async def test_every_command_with_base_dependencies(base_venv, control_plane, home, tmp_path):
    (tmp_path / "inventory.py").write_text("hosts = ['node-1']\n")
    extras = {
        ("server", "--listen", "127.0.0.1:0"): "server",
        ("demo", "--no-tui", "--machines", "0"): "server",
        ("tui",): "tui",
        ("provision", str(tmp_path / "inventory.py"), "--dry"): "provision",
        ("deprovision", str(tmp_path / "inventory.py"), "--dry"): "provision",
    }
    # Independent runs, a few at a time (each is mostly interpreter start-up).
    results = await gather_limited([run_installed(base_venv, home, tmp_path, *argv) for argv in extras])
    for (argv, extra), (status, out, err) in zip(extras.items(), results):
        assert "Traceback" not in err + out, (argv, err)
        assert status == 3, (argv, status, err)
        assert f"pip install 'centrality[{extra}]'" in err, (argv, err)

    # Every command's help, and the operator commands against the real control plane.
    paths = command_paths()
    results = await gather_limited([run_installed(base_venv, home, tmp_path, *path, "--help") for path in paths])
    for path, (status, out, err) in zip(paths, results):
        assert status == 0 and "Usage: centrality" in out, (path, err)
    token = await control_plane.auth.create_token(ttl=600, uses=1, actor="test", address=control_plane.address)
    agent_dir = tmp_path / "agent"
    status, out, err = await run_installed(base_venv, home, tmp_path, "agent", "join", token["join"],
                                           "--name", "base-01", "--config-dir", str(agent_dir))
    assert status == 0, err
    env = no_source_env(cli_env(home))
    agent = await asyncio.create_subprocess_exec(
        str(base_venv / "centrality"), "agent", "run", "--config-dir", str(agent_dir), env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: control_plane.registry.counts()["live"] == 1, timeout=30, what="base agent live")
        for argv in (["status"], ["machines", "ls"], ["machines", "show", "base-01"], ["top"], ["events"],
                     ["metrics", "base-01"], ["exec", "--dry-run", "base-*"], ["exec", "base-01", "--", "true"],
                     ["audit"], ["health"], ["machines", "drain", "base-0[1-2]", "-r", "x"],
                     ["machines", "undrain", "base-01"], ["keys", "ls"], ["token", "ls"],
                     ["wait", "--live", "1", "--json"]):
            status, out, err = await run_installed(base_venv, home, tmp_path, *argv)
            assert "Traceback" not in err, (argv, err)
            assert status == 0, (argv, status, err)
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 15)
