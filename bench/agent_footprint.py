"""The real agent's footprint: CPU and RSS of ``centrality agent run``, and what each collector costs.

Two agents run side by side for ``--duration`` seconds (default 600) against one real
local control plane (``centrality server``, default settings, SQLite), each the real
``centrality agent run`` with the real collectors at 1 Hz:

* ``this machine``: this machine's collectors as they are (no GPU here);
* ``8 fake GPUs``: the same, plus a stand-in NVML module with 8 GPUs
  (``bench/fake_nvml/pynvml.py``, put on that agent's ``PYTHONPATH`` only) and a
  stand-in ``nvidia-smi`` on its ``PATH`` (a shell script printing a rendered 8-GPU
  screen and ``-L`` list), so the screen every 30 s and the health round every 60 s
  run as on a GPU node.

CPU is the agent process's CPU time (user + system) over the wall time of the window
after start-up, as % of one core (a lightly loaded process's CPU time barely changes
with the box's load); the children (nvidia-smi runs) are given apart. RSS is sampled
every 5 s: the last and the peak.

Then, in this process, each collector is timed alone (CPU time per call, median of
``--calls`` calls): the figure to multiply by its rate.

    python -m bench.agent_footprint                 # 10 minutes
    python -m bench.agent_footprint --duration 120  # shorter
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from . import report
from .fleet import Env, free_port, wait_until

PY = sys.executable
FAKE_NVML = Path(__file__).resolve().parent / "fake_nvml"
CASES = ("this machine", "8 fake GPUs")


# ------------------------------------------------------------------ stand-ins for a GPU node


def write_fake_smi(folder: Path) -> Path:
    """A ``nvidia-smi`` that prints a rendered 8x H100 screen, or the ``-L`` list. Returns its folder."""
    from agent_runtime.collectors.simulated import FakeCollectors

    folder.mkdir(parents=True, exist_ok=True)
    fake = FakeCollectors("gpu8", 1)
    (folder / "screen.txt").write_text(fake.screen(time.time()))
    listing = "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08x}-fa4e-0000-0000-00000000000{i})\n"
                      for i in range(8))
    (folder / "list.txt").write_text(listing)
    script = folder / "nvidia-smi"
    script.write_text('#!/bin/sh\nd=$(dirname "$0")\n'
                      'if [ "$1" = "-L" ]; then exec cat "$d/list.txt"; fi\nexec cat "$d/screen.txt"\n')
    script.chmod(0o755)
    return folder


def gpu_env(base: dict, smi_dir: Path) -> dict:
    path = base.get("PYTHONPATH", "")
    return {**base, "PYTHONPATH": f"{FAKE_NVML}{os.pathsep}{path}" if path else str(FAKE_NVML),
            "PATH": f"{smi_dir}{os.pathsep}{base.get('PATH', '')}"}


# ------------------------------------------------------------------ the agents, live


def cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """(CPU seconds of the process, CPU seconds of its waited-for children)."""
    t = proc.cpu_times()
    return t.user + t.system, t.children_user + t.children_system


def run_agents(duration: float, warmup: float) -> dict:
    env = Env()
    port = free_port()
    server = env.spawn("server", "--listen", f"127.0.0.1:{port}", log="server")
    agents: dict[str, subprocess.Popen] = {}
    out: dict = {}
    try:
        wait_until(lambda: env.db.exists() and b"listening on" in (env.root / "server.log").read_bytes(),
                   60, "control plane start", 0.1)
        smi = write_fake_smi(env.root / "fake-smi")
        for i, case in enumerate(CASES):
            join = env.cli("token", "create", "--uses", "1").stdout.strip()
            cdir = env.root / f"agent-{i}"
            r = env.cli("agent", "join", join, "--name", f"footprint-{i}", "--config-dir", str(cdir))
            if r.returncode:
                raise RuntimeError(f"agent join: {r.stderr.strip()}")
            aenv = gpu_env(env.env, smi) if "GPU" in case else env.env
            agents[case] = subprocess.Popen([PY, "-m", "centrality_cli", "agent", "run", "--config-dir", str(cdir)],
                                            env=aenv, stdout=subprocess.DEVNULL,
                                            stderr=open(env.root / f"agent-{i}.log", "w"))
        t_start = time.monotonic()
        wait_until(lambda: env.json("status", attempts=1)["machines"]["live"] >= len(CASES), 120,
                   "both agents live", 0.5)
        live_s = time.monotonic() - t_start
        procs = {case: psutil.Process(a.pid) for case, a in agents.items()}
        startup = {case: {"cpu_s": round(cpu_s(p)[0], 2), "rss_mb": round(p.memory_info().rss / 2**20, 1)}
                   for case, p in procs.items()}
        time.sleep(warmup)
        t0 = {case: cpu_s(p) for case, p in procs.items()}
        w0 = time.monotonic()
        rss: dict[str, list[float]] = {case: [] for case in procs}
        while time.monotonic() - w0 < duration:
            time.sleep(min(5.0, max(0.0, duration - (time.monotonic() - w0))))
            for case, p in procs.items():
                rss[case].append(p.memory_info().rss / 2**20)
        wall = time.monotonic() - w0
        for case, p in procs.items():
            own, children = cpu_s(p)
            mem = p.memory_full_info()
            out[case] = {
                "cpu_percent": round(100 * (own - t0[case][0]) / wall, 3),
                "children_cpu_percent": round(100 * (children - t0[case][1]) / wall, 3),
                "rss_mb": round(rss[case][-1], 1), "rss_peak_mb": round(max(rss[case]), 1),
                "uss_mb": round(mem.uss / 2**20, 1), "threads": p.num_threads(),
                "startup_cpu_s": startup[case]["cpu_s"], "startup_rss_mb": startup[case]["rss_mb"],
            }
        st = env.json("status")
        out["_run"] = {"window_s": round(wall), "warmup_s": warmup, "to_live_s": round(live_s, 1),
                       "machines_live": st["machines"]["live"], "load_average": round(os.getloadavg()[0], 1)}
    finally:
        for a in agents.values():
            if a.poll() is None:
                a.terminate()
        for a in agents.values():
            try:
                a.wait(30)
            except subprocess.TimeoutExpired:
                a.kill()
        if server.poll() is None:
            server.terminate()
            server.wait(60)
    return out


# ------------------------------------------------------------------ each collector alone


def _per_call(fn, calls: int) -> float:
    """Median CPU seconds of one call of ``fn`` (this thread's CPU time, children's included)."""
    times = []
    for _ in range(calls):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.thread_time()
        fn()
        t = time.thread_time() - t
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(t + (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))
    return statistics.median(times)


def collector_costs(calls: int) -> list[dict]:
    """CPU time per call of each collector, with its rate; the GPU ones through the stand-ins."""
    import asyncio

    from agent_runtime.collectors.gpu import GpuCollector, NvidiaSmiScreen
    from agent_runtime.collectors.gpu_procs import GpuProcessCollector
    from agent_runtime.collectors.real import RealCollectors
    from agent_runtime.collectors.system import SystemCollector
    from agent_runtime.config import AgentConfig
    from agent_runtime.health import HealthMonitor, NvmlErrors
    from agent_runtime.sampler import Sampler
    from centrality_core import protocol as p

    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML / "pynvml.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    sys.modules["pynvml"] = fake
    smi = write_fake_smi(Path(tempfile.mkdtemp(prefix="centrality-fake-smi-")))
    os.environ["PATH"] = f"{smi}{os.pathsep}{os.environ['PATH']}"

    rows: list[dict] = []

    def row(what: str, per_s: float, fn) -> None:
        fn()  # first call: probing, rates' baselines
        cost = _per_call(fn, calls)
        rows.append({"collector": what, "per_call_us": round(cost * 1e6, 1), "calls_per_s": per_s,
                     "cpu_percent": round(100 * cost * per_s, 4)})

    system = SystemCollector()
    clock = [time.time()]

    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    row("system: read /proc, /sys, statvfs", 1, system.read)
    raw = system.read()
    row("system: parse and rates", 1, lambda: system.compute(raw, tick()))
    row("system: sample (both)", 1, lambda: system.sample(tick()))
    gpu = GpuCollector()
    row("gpu (NVML, 8 GPUs)", 1, lambda: gpu.sample())
    procs = GpuProcessCollector(gpu, interval_s=0)
    row("gpu processes (NVML, 8 GPUs, every 5 s)", 1 / 5, lambda: procs.sample(tick()))
    screen = NvidiaSmiScreen(interval_s=0)
    row("nvidia-smi screen (a process, every 30 s)", 1 / 30, lambda: screen.sample(tick()))
    nvml_errors = NvmlErrors()
    row("health: NVML ECC and XID (every 60 s)", 1 / 60, nvml_errors.read)
    cfg = AgentConfig()
    sampler = Sampler(RealCollectors(system=SystemCollector(), gpu=gpu, screen=NvidiaSmiScreen(),
                                     procs=GpuProcessCollector(gpu)), 1.0)
    monitor = HealthMonitor(cfg, values=lambda: sampler.latest, registered_gpus=8, probe_gpus=True,
                            on_report=lambda r: None)
    row("health round, all checks (every 60 s)", 1 / 60, lambda: asyncio.run(monitor.round()))

    def batch() -> None:
        for _ in range(5):
            sampler.sample(tick())
        b = sampler.take_batch("s", 1, packed=True)
        p.encode(b)

    for _ in range(5):
        sampler.sample(tick())
    sampler.take_batch("s", 0, packed=True)
    row("a whole GPU-node sample x5 + its packed batch (every 5 s)", 1 / 5, batch)
    b = None
    for _ in range(5):
        sampler.sample(tick())
    b = sampler.take_batch("s", 2, packed=True)
    row("encoding one packed batch alone (every 5 s)", 1 / 5, lambda: p.encode(b))
    return rows


# ------------------------------------------------------------------ report


def markdown(live: dict, costs: list[dict]) -> str:
    run = live["_run"]
    lines = ["## The real agent's footprint (`bench/agent_footprint.py`)", "",
             f"`centrality agent run` with the real collectors at 1 Hz (5 s batches, health every 60 s), against a "
             f"local `centrality server` (defaults, SQLite), two agents side by side for {run['window_s']} s after "
             f"{run['warmup_s']:g} s of warm-up: this machine as it is (no GPU), and the same with 8 fake GPUs "
             f"(a stand-in `pynvml`, `bench/fake_nvml/`, and a stand-in `nvidia-smi` printing an 8-GPU screen). "
             f"CPU = the agent process's CPU time over wall time; nvidia-smi runs are its children, given apart. "
             f"Load average {run['load_average']} during the run.", "",
             "| agent | CPU (% of a core) | children (nvidia-smi) | RSS (peak) | USS | threads "
             "| start-up: CPU, RSS when live | goal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case in CASES:
        r = live[case]
        lines.append(f"| {case} | **{r['cpu_percent']:.2f} %** | {r['children_cpu_percent']:.2f} % "
                     f"| **{r['rss_mb']:.1f} MB** ({r['rss_peak_mb']:.1f}) | {r['uss_mb']:.1f} MB | {r['threads']} "
                     f"| {r['startup_cpu_s']} s, {r['startup_rss_mb']} MB | <= 1 %, <= 60 MB |")
    lines += ["", "Each collector alone, CPU time per call (median; a child process's CPU included) and what "
              "it costs at its rate:", "",
              "| collector | per call | calls/s | % of a core |", "| --- | --- | --- | --- |"]
    for c in costs:
        per = f"{c['per_call_us'] / 1000:.2f} ms" if c["per_call_us"] >= 1000 else f"{c['per_call_us']:.0f} µs"
        rate = f"{c['calls_per_s']:g}" if c["calls_per_s"] >= 1 else f"1/{1 / c['calls_per_s']:.0f}"
        lines.append(f"| {c['collector']} | {per} | {rate} | {c['cpu_percent']:.3f} % |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds measured (after the warm-up)")
    ap.add_argument("--warmup", type=float, default=30, help="seconds after both are live before measuring")
    ap.add_argument("--calls", type=int, default=200, help="calls per collector timed in-process")
    ap.add_argument("--no-write", action="store_true", help="print, do not update docs/performance.md")
    args = ap.parse_args()
    live = run_agents(args.duration, args.warmup)
    print(json.dumps(live), file=sys.stderr, flush=True)
    costs = collector_costs(args.calls)
    md = markdown(live, costs)
    if args.no_write:
        print(md)
        return
    command = "python -m bench.agent_footprint " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("agent_footprint", command.strip(), {"live": live, "collectors": costs}, md)


if __name__ == "__main__":
    main()
