"""Shared pytest configuration for the Centrality test suite.

The real-infrastructure fixtures (a throw-away PostgreSQL server, OpenSSH
``sshd`` test hosts) live in ``tests/fixtures`` and are registered here.
The fixtures below start a real control plane (asyncssh on 127.0.0.1, a real
store) in the test's event loop, and real agents that connect to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.sshd", "tests.fixtures.venvs", "tests.fixtures.haproxy"]

REPO = Path(__file__).resolve().parents[1]

# Started with SIGINT ignored (a background job of a shell without job control, such as
# `nohup scripts/test.sh &`), every process the tests start would inherit it, and the
# tests that press Ctrl-C on a CLI or in a remote shell would wait for nothing: Python's
# handler again here (a process the tests start then begins with the default action).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup(item):
    from tests.fixtures import replicaset

    replicaset.CLOSED.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report shows the last lines of the replicas running meanwhile
    (``tests/fixtures/replicaset.py``): their processes' logs are otherwise lost."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        from tests.fixtures import replicaset

        text = replicaset.logs()
        if text:
            report.sections.append(("replica logs", text))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME: a separate Centrality installation for this test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "CENTRALITY_CONTEXT", "CENTRALITY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("CENTRALITY_") and not var.startswith("CENTRALITY_REQUIRE"):
            monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """A fresh, empty store: SQLite file or a new Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_db_url")


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


FAST = {"heartbeat_interval": 0.2, "limbo_after": 1.0, "dead_after": 3.0}


@pytest.fixture
async def control_plane(home, store_url):
    """A running control plane on 127.0.0.1 (random port) with fast thresholds."""
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST}))
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


@pytest.fixture
async def operator(control_plane):
    """An operator client on the ``local`` context the control plane wrote."""
    from centrality_core.client import OperatorClient

    async with OperatorClient() as client:
        yield client


@dataclass
class RunningAgent:
    agent: object
    task: asyncio.Task
    stop_event: asyncio.Event
    config_dir: Path

    @property
    def name(self) -> str:
        return self.agent.name

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 10)

    def drop(self) -> None:
        """Cut the connection abruptly (the agent will reconnect)."""
        self.agent.close()


@pytest.fixture
async def agents(control_plane, tmp_path):
    """Factory: ``await agents(name, index=0, profile="cpu")`` joins and runs a real agent."""
    import msgspec

    from agent_runtime import config as agent_config
    from centrality_core.backoff import Backoff
    from agent_runtime.main import build_agent, join

    running: list[RunningAgent] = []

    async def start(name: str | None = None, *, index: int = 0, profile: str = "cpu",
                    config_dir: Path | None = None, token: dict | None = None,
                    wait_live: bool = True, collectors=None, **settings) -> RunningAgent:
        """``settings`` are agent.toml fields, e.g. ``sample_interval=0.1``."""
        config_dir = config_dir or tmp_path / f"agent-{len(running)}"
        if not (config_dir / "agent.toml").exists():
            token = token or await control_plane.auth.create_token(
                ttl=600, uses=1, actor="test", address=control_plane.address)
            join(token["join"], name=name, config_dir=config_dir)
        if settings:
            cfg = agent_config.load(config_dir)
            agent_config.save(config_dir, msgspec.structs.replace(cfg, **settings))
        agent = build_agent(config_dir, profile=profile, index=index, collectors=collectors)
        agent.backoff = Backoff(initial=0.05, maximum=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        ra = RunningAgent(agent, task, stop, config_dir)
        running.append(ra)
        if wait_live:
            await wait_for(lambda: task.done() or agent.state.registered, what=f"agent {agent.name} to register")
            if task.done():
                task.result()
        return ra

    yield start
    for ra in running:
        await ra.stop()


def cli_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "CENTRALITY_"))}
    env.update(HOME=str(home), COLUMNS="200", NO_COLOR="1")
    return env


async def cli(home: Path, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run the real ``centrality`` CLI in a subprocess; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", *args, env=cli_env(home), cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


# ------------------------------------------------------------------ processes a test started

def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []


@pytest.fixture
def reap_pids():
    """Pids a test started remotely; any still alive at the end is killed (and fails no one)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
