"""``centrality simulate``: a fleet of simulated machines against a control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import output


def simulate(
    agents: int = typer.Option(..., "--agents", "-n", min=1, help="How many machines to simulate."),
    join: Optional[str] = typer.Option(None, "--join", envvar="CENTRALITY_JOIN",
                                       help="Join string from `centrality token create --uses N` "
                                            "(not needed again once the machines are enrolled)."),
    profile: str = typer.Option("mixed", "--profile", help="cpu, gpu8 (8x H100) or mixed (1 in 4 is gpu8)."),
    name_prefix: str = typer.Option("sim-", "--name-prefix", help="Machines are named PREFIX00001..."),
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="Worker processes to spread agents over."),
    ramp: Optional[float] = typer.Option(None, "--ramp", help="Seconds over which connections start "
                                         "[default: 1 s per 250 agents]."),
    sample_interval: float = typer.Option(1.0, "--sample-interval", help="Seconds between samples."),
    batch_interval: float = typer.Option(5.0, "--batch-interval", help="Seconds between metric batches."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="Keys of the simulated machines "
                                             "[default: ~/.local/share/centrality/simulate]."),
    seed: int = typer.Option(0, "--seed", help="Seed for specs, load patterns and jitter."),
    files_root: Optional[Path] = typer.Option(None, "--files-root", help="Give each machine its own "
                                              "DIR/<name> as files_root, so `cp` to simulated machines works."),
    handshakes: int = typer.Option(64, "--handshakes", min=1, help="SSH handshakes each process has in "
                                   "flight at most (the rest wait their turn)."),
    start: int = typer.Option(1, "--start", hidden=True, help="First machine index (workers)."),
) -> None:
    """Run N simulated machines: real SSH connections and agents, fake metrics. Ctrl-C stops all."""
    from centrality_core import names, paths

    if profile not in ("cpu", "gpu8", "mixed"):
        output.fail(f"--profile must be cpu, gpu8 or mixed, not {profile!r}", 2)
    if not names.is_valid(f"{name_prefix}00001"):
        output.fail(f"--name-prefix {name_prefix!r} does not make valid machine names ({names.NAME_RULE})", 2)
    state = state_dir or paths.data_dir() / "simulate"
    ramp = agents / 250 if ramp is None else ramp
    if processes > 1:
        return _spawn_workers(agents, processes, join, profile, name_prefix, ramp, sample_interval,
                              batch_interval, state, seed, files_root, handshakes)

    def go():
        import asyncio

        from agent_runtime.simulate import FleetSpec, SimulatedFleet, StateDir
        from centrality_core.runtime import tune_gc, use_uvloop

        spec = FleetSpec(count=agents, start=start, profile=profile, prefix=name_prefix, seed=seed,
                         ramp=ramp, sample_interval=sample_interval, batch_interval=batch_interval,
                         files_root=str(files_root.resolve()) if files_root else "", handshakes=handshakes)
        fleet = SimulatedFleet(spec, StateDir(state), join)
        fleet.build()
        use_uvloop()
        tune_gc()
        asyncio.run(_run(fleet))

    output.run(go)


async def _run(fleet) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    first, last = fleet.agents[0].name, fleet.agents[-1].name
    runner = asyncio.ensure_future(fleet.run(stop))
    shown = -1
    while not runner.done():
        await asyncio.wait({runner}, timeout=5)
        live = fleet.live
        if live != shown:
            print(f"simulate {first}..{last}: {live}/{len(fleet.agents)} live"
                  + (f", {len(fleet.failed)} stopped" if fleet.failed else ""), file=sys.stderr, flush=True)
            shown = live
    runner.result()
    for name, reason in sorted(fleet.failed.items())[:10]:
        print(f"  {name}: {reason}", file=sys.stderr)
    import json

    # One summary line on stdout, in one write: worker processes share the pipe, and a line
    # written in pieces could be split by another worker's.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(fleet.totals()) + "\n").encode())


def _spawn_workers(agents, processes, join, profile, prefix, ramp, sample_interval, batch_interval,
                   state, seed, files_root=None, handshakes=64) -> None:
    """Split the fleet over worker processes; stopping this one stops them all."""
    env = {**os.environ}
    if join:
        env["CENTRALITY_JOIN"] = join  # not on the command line, where `ps` shows it
    workers = []
    per = -(-agents // processes)
    for k in range(processes):
        count = min(per, agents - k * per)
        if count <= 0:
            break
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "centrality_cli", "simulate", "--agents", str(count), "--start",
             str(1 + k * per), "--profile", profile, "--name-prefix", prefix, "--ramp", str(ramp),
             "--sample-interval", str(sample_interval), "--batch-interval", str(batch_interval),
             "--state-dir", str(state), "--seed", str(seed), "--handshakes", str(handshakes)]
            + (["--files-root", str(files_root)] if files_root else []), env=env))

    def forward(sig, _frame):
        for w in workers:
            if w.poll() is None:
                w.send_signal(sig)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [w.wait() for w in workers]
    worst = max(codes, key=abs)
    if worst:
        raise typer.Exit(worst if worst > 0 else 128 - worst)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
