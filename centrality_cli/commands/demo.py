"""``centrality demo``: a whole local installation in one command.

Starts a control plane on SQLite and an agent for this machine, each as its
own ``centrality`` process, in a private state directory (the user's own
installation is not touched). Then, by default, a simulated fleet of a few
dozen machines of mixed profiles (``centrality simulate``) and the dashboard
(``centrality tui``) in front; quitting the dashboard stops everything the
demo started. ``--no-tui`` instead walks through the lifecycle from the CLI:
live, limbo when the agent dies, live again as the same machine. Everything
it started is stopped when it ends or on Ctrl-C, and on Linux when the demo
itself is killed (kill -9 included: its processes are told by the kernel).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from .. import output


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo dies, however it dies (Linux's
    PR_SET_PDEATHSIG). Elsewhere, a demo killed -9 leaves its processes running."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_CHILD = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}


class Stack:
    """Owns the demo's processes; stopping it stops them all (SIGTERM, then SIGKILL)."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def cli(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        r = subprocess.run([sys.executable, "-m", "centrality_cli", *args], env=self.env,
                           capture_output=True, text=True, input=stdin)
        if check and r.returncode != 0:
            raise SystemExit(f"`centrality {' '.join(args)}` failed: {r.stderr.strip()}")
        return r.stdout

    def show(self, *args: str) -> None:
        output.console().print(f"\n[bold cyan]$ centrality {' '.join(args)}[/]")
        sys.stdout.write(self.cli(*args, check=False))
        sys.stdout.flush()

    def spawn(self, *args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
        """``centrality ARGS`` in the background; ``env`` adds variables (secrets go there, not in
        ARGS, where `ps` shows them)."""
        proc = subprocess.Popen([sys.executable, "-m", "centrality_cli", *args], env={**self.env, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
                                start_new_session=True, **_CHILD)
        self.procs.append(proc)
        return proc

    def foreground(self, *args: str) -> int:
        """Run ``centrality ARGS`` on this terminal until it exits (the dashboard)."""
        env = {k: v for k, v in self.env.items() if k not in ("COLUMNS", "LINES")}
        env.update({k: os.environ[k] for k in ("COLUMNS", "LINES") if k in os.environ})  # the real terminal's
        proc = subprocess.Popen([sys.executable, "-m", "centrality_cli", *args], env=env, **_CHILD)
        self.procs.append(proc)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the dashboard handles its own keys
        try:
            return proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _say(text: str) -> None:
    output.console().print(f"\n[bold]{text}[/]")


def demo(
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="Where the demo keeps its "
                                             "installation [default: a temporary directory]."),
    keep: bool = typer.Option(False, "--keep", help="With --no-tui: keep running after the walk-through, "
                              "until Ctrl-C."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Walk through the lifecycle from the CLI instead "
                                "of opening the dashboard."),
    machines: int = typer.Option(36, "--machines", min=0, help="Simulated machines next to this one "
                                 "(a mix of 8-GPU and CPU machines)."),
) -> None:
    """Run a local control plane, an agent for this machine and a simulated fleet, with the dashboard."""
    if not no_tui and not (sys.stdin.isatty() and sys.stdout.isatty()):
        _say("Not on a terminal: the dashboard needs one, so here is the walk-through from the CLI.")
        no_tui = True
    from ..extras import require

    require("centrality demo", ["sqlalchemy", "alembic", "numpy", "ClusterShell"] + ([] if no_tui else ["textual"]))
    with ExitStack() as stack:
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        root = state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="centrality-demo-")))
        root = root.resolve()
        env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_DATA_HOME": str(root / "data"),
               "COLUMNS": os.environ.get("COLUMNS", "120"),
               # every simulated machine connects from 127.0.0.1: no per-address rate limit
               "CENTRALITY_CONNECTION_RATE_PER_SOURCE": "0", "CENTRALITY_MAX_ENROLLING_PER_SOURCE": "0"}
        env.pop("CENTRALITY_CONTEXT", None)
        procs = Stack(env)
        stack.callback(procs.close)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        port = _free_port()

        _say(f"1. A control plane on 127.0.0.1:{port}, SQLite store under {root}")
        procs.spawn("server", "--listen", f"127.0.0.1:{port}", "--heartbeat-interval", "1s",
                    "--limbo-after", "3s", "--dead-after", "10m", log=root / "server.log")
        _wait_for_server(procs, root / "server.log")
        procs.show("status")

        _say("2. An agent for this machine joins with a one-time token")
        join = procs.cli("token", "create", "--ttl", "10m").strip()
        agent_dir = root / "agent"
        procs.cli("agent", "join", "-", "--config-dir", str(agent_dir), stdin=join)  # not in `ps`
        if not no_tui:
            _lively(agent_dir)
        agent = procs.spawn("agent", "run", "--config-dir", str(agent_dir), log=root / "agent.log")
        procs.cli("wait", "--live", "1", "--timeout", "30s")
        procs.show("machines", "ls")

        if not no_tui:
            return _fleet_and_dashboard(procs, root, machines, kept=state_dir is not None)

        _say("3. The agent dies: its machine is in limbo at once")
        procs.stop(agent, signal.SIGKILL)
        time.sleep(0.5)
        procs.show("machines", "ls")

        _say("4. The agent restarts with identical specs: the same machine is live again")
        procs.spawn("agent", "run", "--config-dir", str(agent_dir), log=root / "agent.log")
        procs.cli("wait", "--live", "1", "--timeout", "30s")
        procs.show("machines", "ls")
        procs.show("events")

        if keep:
            _say(f"Running. In another terminal:\n  export XDG_CONFIG_HOME={root}/config "
                 f"XDG_DATA_HOME={root}/data\n  centrality tui\nCtrl-C stops everything.")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        _say("Stopping everything the demo started.")


def _lively(agent_dir: Path) -> None:
    """This machine's agent samples and sends every second, so its charts move in the dashboard."""
    import msgspec

    from agent_runtime import config as agent_config

    cfg = agent_config.load(agent_dir)
    agent_config.save(agent_dir, msgspec.structs.replace(cfg, sample_interval=1.0, batch_interval=1.0))


def _where(root: Path, kept: bool) -> str:
    """Where the logs are, said truthfully: a temporary directory is gone after the demo."""
    if kept:
        return f"(Logs and state: {root}; kept after the demo)"
    return (f"(Logs and state: {root} while the demo runs; it is removed on quit: "
            "--state-dir DIR keeps them)")


def _fleet_and_dashboard(procs: Stack, root: Path, machines: int, kept: bool) -> None:
    if machines:
        _say(f"3. A simulated fleet of {machines} machines (1 in 4 with 8 GPUs) joins")
        join = procs.cli("token", "create", "--ttl", "10m", "--uses", str(machines)).strip()
        procs.spawn("simulate", "--agents", str(machines), "--profile", "mixed",
                    "--name-prefix", "sim-", "--sample-interval", "1", "--batch-interval", "1",
                    "--state-dir", str(root / "simulate"), log=root / "simulate.log",
                    env={"CENTRALITY_JOIN": join})  # the join secret stays off the command line
        procs.cli("wait", "--live", str(machines + 1), "--timeout", "120s")
    _say(f"4. The dashboard. q quits it and stops everything the demo started.\n   {_where(root, kept)}")
    time.sleep(1.0)
    status = procs.foreground("tui")
    _say("Stopping everything the demo started.")
    if status not in (0, None):
        raise SystemExit(status)


def _wait_for_server(procs: Stack, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and b"listening on" in log.read_bytes():
            return
        if any(p.poll() is not None for p in procs.procs):
            raise SystemExit(f"the control plane did not start:\n{log.read_text()}")
        time.sleep(0.05)
    raise SystemExit(f"the control plane did not start within {timeout:g}s:\n{log.read_text()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
