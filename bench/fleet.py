"""Fleet benchmarks: fan-in, reconnect storm and CLI at N simulated machines,
each next to its floor, all in one run.

For each N: a real ``centrality server`` (SQLite) and ``centrality simulate``
(1 Hz samples in 5 s batches, mixed profile) in separate processes.

* fan-in: control-plane CPU and RSS over a steady window, sample-to-stored
  lag p50/p99 (the control plane's own measurement), and samples lost (taken
  by agents but neither stored nor still buffered when they stop). Floor: the
  same N of bare asyncssh connections carrying the same bytes per batch
  (``bench/floor.py``); the ratio is control-plane CPU / floor CPU.
* reconnect storm: SIGTERM the control plane, start it again at once; time
  until all N are live, and machines created by the storm (must be 0).
* CLI: ``centrality --help`` cold start (floor: ``python -c pass``) and
  ``centrality machines ls --json`` at N machines.

    python -m bench.fleet --agents 1000 --agents 5000 --agents 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from . import report

PY = sys.executable


class Env:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="centrality-fleet-"))
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(self.root / "config"),
                    "XDG_DATA_HOME": str(self.root / "data"), "CENTRALITY_CONTEXT": "local",
                    # every simulated machine connects from 127.0.0.1: no per-address limits
                    "CENTRALITY_CONNECTION_RATE_PER_SOURCE": "0", "CENTRALITY_MAX_ENROLLING_PER_SOURCE": "0"}
        self.db = self.root / "data" / "centrality" / "server" / "centrality.db"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "centrality_cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str, attempts: int = 3) -> dict:
        """A command's JSON answer; retried, since the box may be saturated on purpose."""
        for attempt in range(attempts):
            r = self.cli(*args, "--json")
            try:
                return json.loads(r.stdout)
            except json.JSONDecodeError:
                if attempt == attempts - 1:
                    raise RuntimeError(f"centrality {' '.join(args)} --json: exit {r.returncode}: "
                                       f"{r.stderr.strip()[:500]}") from None
                time.sleep(2)

    def spawn(self, *args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen([PY, "-m", "centrality_cli", *args], env=self.env,
                                stdout=open(self.root / f"{log}.out", "w"),
                                stderr=open(self.root / f"{log}.log", "w"))


def wait_until(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not reached in {timeout:g}s")


def start_server(env: Env, port: int) -> subprocess.Popen:
    proc = env.spawn("server", "--listen", f"127.0.0.1:{port}", "--heartbeat-interval", "5s",
                     "--limbo-after", "20s", "--dead-after", "1h", log="server")
    wait_until(lambda: env.db.exists() and b"listening on" in (env.root / "server.log").read_bytes(),
               60, "control plane start", 0.1)
    return proc


def live(env: Env) -> int:
    try:
        return env.json("status", attempts=1)["machines"]["live"]
    except (RuntimeError, subprocess.TimeoutExpired):
        return 0


def cpu_window(pid: int, seconds: float) -> tuple[float, float]:
    """CPU % of a process (and its children) over a window, and its peak RSS in MB."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    t0 = [sum(p.cpu_times()[:2]) for p in procs]
    start, peak = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        time.sleep(1)
        peak = max(peak, sum(p.memory_info().rss for p in procs))
    used = sum(sum(p.cpu_times()[:2]) - t for p, t in zip(procs, t0))
    return 100 * used / (time.monotonic() - start), peak / 2**20


def stored_samples(db: Path) -> tuple[int, int]:
    """(samples stored, average batch payload bytes) read from the SQLite store."""
    con = sqlite3.connect(db)
    n, total = 0, 0
    count = 0
    for (payload,) in con.execute("select payload from metric_batches"):
        n += len(json.loads(payload)["ts"])
        total += len(payload)
        count += 1
    con.close()
    return n, (total // count if count else 0)


def median_time(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, window: float, processes: int) -> dict:
    env = Env()
    port = free_port()
    server = start_server(env, port)
    result: dict = {"agents": n}
    try:
        join = env.cli("token", "create", "--uses", str(n), "--ttl", "2h").stdout.strip()
        t0 = time.monotonic()
        sim = env.spawn("simulate", "--agents", str(n), "--processes", str(processes), "--join", join,
                        "--state-dir", str(env.root / "sim"), "--ramp", str(max(5, n / 400)), log="simulate")
        wait_until(lambda: live(env) >= n, 60 + n / 20, f"{n} agents live", 2)
        result["first_join_s"] = round(time.monotonic() - t0, 1)
        time.sleep(15)  # let batches settle into their 5 s rhythm

        cpu, rss = cpu_window(server.pid, window)
        st = env.json("status")
        result["fanin"] = {"cpu_percent": round(cpu, 1), "rss_mb": round(rss),
                           "lag_p50_s": st["metrics"]["sample_to_stored_lag"]["p50_s"],
                           "lag_p99_s": st["metrics"]["sample_to_stored_lag"]["p99_s"]}

        result["cli"] = {
            "machines_ls_json_s": round(median_time(lambda: env.cli("machines", "ls", "--json"), 3), 3),
            "machines_ls_json_floor_s": round(median_time(lambda: env.cli("status", "--json"), 3), 3),
        }

        # Reconnect storm: the control plane restarts under N agents.
        before = env.json("machines", "ls")
        server.send_signal(signal.SIGTERM)
        server.wait(120)
        t0 = time.monotonic()
        server = start_server(env, port)
        wait_until(lambda: live(env) >= n, 600, "everyone back after the restart", 1)
        after = env.json("machines", "ls")
        result["storm"] = {"all_live_s": round(time.monotonic() - t0, 1),
                           "duplicates": len(after) - len(before),
                           "ids_changed": sum(a["id"] != b["id"] for a, b in zip(
                               sorted(before, key=lambda m: m["name"]), sorted(after, key=lambda m: m["name"])))}

        # Stop the agents; compare what they took with what was stored.
        time.sleep(10)
        sim.send_signal(signal.SIGINT)
        sim.wait(120)
        totals = [json.loads(line) for line in (env.root / "simulate.out").read_text().splitlines() if line]
        taken = sum(t["samples_taken"] for t in totals)
        pending = sum(t["samples_pending"] for t in totals)
        dropped = sum(t["samples_dropped"] for t in totals)
        server.send_signal(signal.SIGTERM)
        server.wait(120)
        stored, batch_bytes = stored_samples(env.db)
        result["samples"] = {"taken": taken, "stored": stored, "pending_at_stop": pending, "dropped": dropped,
                             "lost": max(0, taken - pending - stored) + dropped,
                             "stored_twice": max(0, stored - taken)}
        result["batch_bytes"] = batch_bytes
    finally:
        for p in (server,):
            if p.poll() is None:
                p.terminate()
                p.wait(60)

    # The floor: bare asyncssh connections carrying the same bytes.
    fport = free_port()
    fserver = subprocess.Popen([PY, "-m", "bench.floor", "server", "--port", str(fport)], stdout=subprocess.PIPE,
                               text=True, cwd=report.ROOT)
    fserver.stdout.readline()
    per = -(-n // processes)
    fclients = [subprocess.Popen([PY, "-m", "bench.floor", "clients", "--port", str(fport), "--count",
                                  str(min(per, n - k * per)), "--bytes", str(max(result["batch_bytes"], 100)),
                                  "--ramp", str(max(5, n / 400))], stdout=subprocess.DEVNULL, cwd=report.ROOT)
                for k in range(processes) if n - k * per > 0]
    time.sleep(max(5, n / 400) + 15)
    fcpu, frss = cpu_window(fserver.pid, window)
    for p in fclients + [fserver]:
        p.send_signal(signal.SIGTERM)
    for p in fclients + [fserver]:
        p.wait(60)
    result["floor"] = {"cpu_percent": round(fcpu, 1), "rss_mb": round(frss)}
    result["cpu_ratio_to_floor"] = round(result["fanin"]["cpu_percent"] / max(fcpu, 0.1), 2)
    return result


def help_times() -> dict:
    env = Env()
    return {"help_s": round(median_time(lambda: env.cli("--help")), 3),
            "python_floor_s": round(median_time(lambda: subprocess.run([PY, "-c", "pass"])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, action="append")
    ap.add_argument("--window", type=float, default=30, help="seconds of steady fan-in measured")
    ap.add_argument("--processes", type=int, default=2, help="simulator worker processes")
    args = ap.parse_args()
    sizes = args.agents or [1000, 5000, 10000]
    runs = []
    for n in sizes:
        try:
            runs.append(run(n, args.window, args.processes))
        except Exception as exc:  # noqa: BLE001 - report what failed and go on
            runs.append({"agents": n, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    cli = help_times()
    rows = []
    for r in runs:
        if "error" in r:
            rows.append(f"| {r['agents']:,} | failed: {r['error']} |||||||||")
            continue
        f, s, st = r["fanin"], r["samples"], r["storm"]
        rows.append(
            f"| {r['agents']:,} | {f['cpu_percent']} % | {r['floor']['cpu_percent']} % | {r['cpu_ratio_to_floor']}x "
            f"| {f['rss_mb']} MB | {s['lost']} | {f['lag_p50_s']} / {f['lag_p99_s']} s | {st['all_live_s']} s "
            f"| {st['duplicates']} | {r['cli']['machines_ls_json_s']} s |")
    md = ("## Fleet: fan-in, reconnect storm, CLI (`bench/fleet.py`)\n\n"
          "N simulated machines (`centrality simulate`, mixed profile, 1 Hz samples in 5 s batches) against one "
          "control plane on SQLite, both on this 2-core machine. Floor = the same N bare asyncssh connections "
          "carrying the same bytes (`bench/floor.py`), measured in the same run.\n\n"
          "| agents | control-plane CPU | floor CPU | ratio | RSS | samples lost | lag p50 / p99 | storm: all live "
          "| storm: new machines | `machines ls --json` |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) +
          f"\n\n`centrality --help` cold start: {cli['help_s']} s (floor, `python -c pass`: {cli['python_floor_s']} s).\n\n"
          "Goals: 10,000 agents with 0 samples lost and p99 <= 6 s, RSS <= 1 GiB, CPU <= 2x the floor, "
          "storm <= 60 s, `--help` <= 0.3 s, `machines ls --json` at 10,000 <= 1 s.")
    command = "python -m bench.fleet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("fleet", command.strip(), {"runs": runs, "cli": cli}, md)


if __name__ == "__main__":
    main()
