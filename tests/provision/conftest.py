"""Fixtures for the provisioning tests: one agent wheel per session, the CLI with the
local-hosts environment, and a finaliser that kills every process left under a test prefix."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env


@pytest.fixture
def store_url(tmp_path) -> str:
    """Provisioning needs one store, not both: SQLite (the store has its own tests)."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="session")
def agent_wheel(project_wheel) -> Path:
    """The agent wheel, built once per session from this source tree (as `provision` does).

    It is the session's project wheel: ``wheel.build()`` of the source tree this code runs
    from, the same bytes the venv fixtures install, so it is built once, not twice."""
    return project_wheel


def processes_under(root: Path) -> list[int]:
    """Pids whose command line mentions ``root`` (the agents and supervisors of a test)."""
    needle = str(root).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_under(root: Path, timeout: float = 5.0) -> list[int]:
    """SIGTERM (then SIGKILL) every process group with a process under ``root``."""
    found = processes_under(root)
    groups = set()
    for pid in found:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            if pgid in (os.getpgid(0), 0, 1):
                continue
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while processes_under(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not processes_under(root):
            break
    return found


@pytest.fixture
def prefix_root(tmp_path) -> Path:
    """Where the test hosts' prefixes go; anything still running under it is killed at the end."""
    root = tmp_path / "prefixes"
    root.mkdir()
    yield root
    kill_under(root)


async def run_cli(home: Path, *args: str, env: dict | None = None, timeout: float = 240,
                  stdin: bytes | None = None) -> tuple[int, str, str]:
    """The real ``centrality`` CLI in a subprocess, with extra environment."""
    full_env = {**cli_env(home), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", *args, env=full_env, cwd=str(REPO),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()
