"""Memory of ``centrality simulate`` per simulated machine, next to bare asyncssh clients.

For each N: a real ``centrality server`` (SQLite; per-source connection limits off,
as for any simulation on one host) and ``centrality simulate --agents N`` in one
process (mixed profile, 1 Hz samples, 5 s batches, enrolling on the first run as
a user's first run does). Once all N are live and a minute has passed, the
simulator's RSS is sampled for ``--window`` seconds (median and peak). Per machine:
RSS / N, and between two sizes the marginal (RSS(N2) - RSS(N1)) / (N2 - N1),
which leaves the interpreter's fixed ~40 MB out.

Floor: the same N bare asyncssh client connections in one process (``bench/floor.py
clients``: one session channel each, a 9 KB message every 5 s), what SSH alone costs
per connection in Python.

    python -m bench.simulator_memory --agents 500 --agents 2000
"""

from __future__ import annotations

import argparse
import shlex
import signal
import statistics
import subprocess
import sys
import time

import psutil

from . import report
from .fleet import PY, Env, free_port, start_server, wait_until


def live(env: Env) -> int:
    """Machines live, 0 while the control plane is too busy to answer (a join storm)."""
    try:
        return env.json("status", attempts=1)["machines"]["live"]
    except (RuntimeError, subprocess.TimeoutExpired, KeyError, TypeError):
        return 0


def rss_window(pid: int, seconds: float) -> tuple[float, float]:
    """Median and peak RSS (MB) of a process over ``seconds``."""
    proc, values = psutil.Process(pid), []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        values.append(proc.memory_info().rss / 2**20)
        time.sleep(2)
    return statistics.median(values), max(values)


def simulator(n: int, settle: float, window: float) -> dict:
    env = Env()
    port = free_port()
    server = start_server(env, port)
    sim = None
    try:
        join = env.cli("token", "create", "--uses", str(n), "--ttl", "2h").stdout.strip()
        t0 = time.monotonic()
        sim = subprocess.Popen(["nice", PY, "-m", "centrality_cli", "simulate", "--agents", str(n), "--join", join,
                                "--state-dir", str(env.root / "sim"), "--ramp", str(max(5, n / 200))],
                               env=env.env, stdout=subprocess.DEVNULL, stderr=open(env.root / "simulate.log", "w"))
        wait_until(lambda: live(env) >= n, 120 + n / 5, f"{n} agents live", 2)
        joined = time.monotonic() - t0
        time.sleep(settle)
        median, peak = rss_window(sim.pid, window)
        return {"agents": n, "rss_mb": round(median, 1), "rss_peak_mb": round(peak, 1),
                "kb_per_machine": round(median * 1024 / n, 1), "first_join_s": round(joined, 1)}
    finally:
        for p in (sim, server):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT if p is sim else signal.SIGTERM)
                try:
                    p.wait(120)
                except subprocess.TimeoutExpired:
                    p.kill()


def floor(n: int, settle: float, window: float) -> dict:
    port = free_port()
    server = subprocess.Popen([PY, "-m", "bench.floor", "server", "--port", str(port)], stdout=subprocess.PIPE,
                              text=True, cwd=report.ROOT)
    server.stdout.readline()
    clients = subprocess.Popen(["nice", PY, "-m", "bench.floor", "clients", "--port", str(port), "--count", str(n),
                                "--ramp", str(max(5, n / 200))], stdout=subprocess.PIPE, text=True, cwd=report.ROOT)
    try:
        for line in clients.stdout:
            if f"connected {n}/{n}" in line:
                break
        time.sleep(settle)
        median, peak = rss_window(clients.pid, window)
        return {"agents": n, "rss_mb": round(median, 1), "kb_per_connection": round(median * 1024 / n, 1)}
    finally:
        for p in (clients, server):
            p.send_signal(signal.SIGTERM)
        for p in (clients, server):
            p.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, action="append")
    ap.add_argument("--settle", type=float, default=60, help="seconds after all are live before measuring")
    ap.add_argument("--window", type=float, default=30, help="seconds of RSS samples")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sizes = sorted(args.agents or [500, 2000])
    runs = []
    for n in sizes:
        r = simulator(n, args.settle, args.window)
        r["floor"] = floor(n, args.settle / 2, args.window)
        runs.append(r)
        print(r, file=sys.stderr, flush=True)
    rows = []
    for i, r in enumerate(runs):
        marginal = ""
        if i:
            a = runs[i - 1]
            marginal = f"{(r['rss_mb'] - a['rss_mb']) * 1024 / (r['agents'] - a['agents']):.0f} KB"
            fm = (r["floor"]["rss_mb"] - a["floor"]["rss_mb"]) * 1024 / (r["agents"] - a["agents"])
            marginal += f" (floor {fm:.0f} KB)"
        rows.append(f"| {r['agents']:,} | {r['rss_mb']:.0f} MB (peak {r['rss_peak_mb']:.0f}) "
                    f"| **{r['kb_per_machine']:.0f} KB** | {marginal or '-'} | {r['floor']['rss_mb']:.0f} MB "
                    f"| {r['floor']['kb_per_connection']:.0f} KB | {r['first_join_s']} s |")
    md = ("## Simulator memory per machine (`bench/simulator_memory.py`)\n\n"
          "`centrality simulate --agents N` in one process (mixed profile, 1 Hz samples in 5 s batches, each machine a "
          "real agent with its own SSH connection), against a local control plane (SQLite, per-source limits off), "
          "RSS a minute after all N are live. Floor: N bare asyncssh client connections in one process "
          "(`bench/floor.py`, one channel each).\n\n"
          "| machines | simulator RSS | per machine (RSS / N) | marginal per machine | floor RSS "
          "| floor per connection | all live after |\n"
          "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) +
          "\n\nGoal: <= 100 KB per simulated machine.")
    if args.no_write:
        print(md)
        return
    command = "python -m bench.simulator_memory " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("simulator_memory", command.strip(), {"runs": runs}, md)


if __name__ == "__main__":
    main()
