"""Fleet benchmarks: fan-in, reconnect storm and CLI at N simulated machines,
each next to its floor, all in one run.

For each N: a real ``centrality server`` (SQLite) and ``centrality simulate``
(1 Hz samples in 5 s batches, mixed profile) in separate processes.

* fan-in: control-plane CPU and RSS over a steady window, sample-to-stored
  lag p50/p99 (the control plane's own measurement), and samples lost (taken
  by agents but neither stored nor still buffered when they stop). Floor: the
  same N of bare asyncssh connections carrying the same bytes per batch
  (``bench/floor.py``); the ratio is control-plane CPU / floor CPU.
* reconnect storms: SIGTERM the control plane and start it again at once
  (``restart``), then SIGKILL it, with no shutdown at all (``kill``); time
  until all N are live, CPU of the control plane and of the simulator until
  then, and machines created by the storm (must be 0). Floor: N bare asyncssh
  handshakes with a session each, on both sides (``bench/floor.py storm``).
* samples: after both storms, what the agents took against what the store
  holds, read through its own read path (chunks and staged batches): lost and
  stored twice (must be 0).
* CLI: ``centrality --help`` cold start (floor: ``python -c pass``) and
  ``centrality machines ls --json`` at N machines.

    python -m bench.fleet --agents 1000 --agents 5000 --agents 10000
    python -m bench.fleet --agents 2000 --window 0 --profile-dir /tmp/prof --json-out /tmp/storm.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sqlite3
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from . import report

PY = sys.executable


class Env:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="centrality-fleet-"))
        self.env = {**report.installed_env(os.environ), "XDG_CONFIG_HOME": str(self.root / "config"),
                    "XDG_DATA_HOME": str(self.root / "data"), "CENTRALITY_CONTEXT": "local",
                    # every simulated machine connects from 127.0.0.1: no per-address limits
                    "CENTRALITY_CONNECTION_RATE_PER_SOURCE": "0", "CENTRALITY_MAX_ENROLLING_PER_SOURCE": "0"}
        self.db = self.root / "data" / "centrality" / "server" / "centrality.db"

    def remove(self) -> None:
        """Its directory (the store and the simulator's keys: ~1 GB at 10,000 machines)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def cli(self, *args: str, timeout: float = 120, shared: bool = False) -> subprocess.CompletedProcess:
        """A command; ``shared``: through a shared connection (``CENTRALITY_PERSIST``), whose
        master the first such command leaves (``open_shared``)."""
        env = {**self.env, "CENTRALITY_PERSIST": "10m", "XDG_RUNTIME_DIR": str(self.root)} if shared else self.env
        return subprocess.run([PY, "-m", "centrality_cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)

    def open_shared(self) -> None:
        """Open the shared connection and wait for its master to listen."""
        self.cli("status", shared=True)
        for _ in range(300):
            d = self.root / "centrality"
            if d.is_dir() and any(p.is_socket() for p in d.iterdir()):
                return
            time.sleep(0.1)
        raise RuntimeError("the shared connection's master did not start")

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
    try:  # an error (the control plane busy, or not up yet) answers {"error": ...}
        return env.json("status", attempts=1).get("machines", {}).get("live", 0)
    except (RuntimeError, subprocess.TimeoutExpired):
        return 0


def live_in_store(env: Env) -> int:
    """Machines the store says are live: a query, where ``status`` is a CLI process and an SSH
    handshake (about half a second of CPU on the cores the fleet shares: polled every second, a
    quarter of a core). The store learns of a registration from the writer, a little after it."""
    try:
        with sqlite3.connect(f"file:{env.db}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM machines WHERE state = 'live'").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_live(env: Env, n: int, timeout: float, what: str) -> None:
    """Until the store says ``n`` are live, then ``status`` too (the control plane's word)."""
    wait_until(lambda: live_in_store(env) >= n, timeout, what, 1)
    wait_until(lambda: live(env) >= n, 120, what, 1)


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


def stored_samples(db: Path) -> dict:
    """What the store holds, read the way the control plane reads it back (its
    chunks and staged batches, through their own decoders): samples stored,
    samples stored twice (the same machine and time more than once), and the
    average size of a batch as agents send it (for the floor's messages)."""
    from centrality_core import protocol as p
    from control_plane.history import batch_arrays
    from control_plane.store import tsz
    from control_plane.store.chunks import Chunks
    from control_plane.store.db import Store

    store = Store(f"sqlite:///{db}")
    chunks = Chunks(store)
    n = twice = frames = frame_bytes = 0
    try:
        for machine in store.load_machines():
            mid, times = machine["id"], []
            for blob in chunks.read(mid, 0, float("-inf"), float("inf")):
                times.append(tsz.decode(blob).ts)
            for payload in store.metric_batches(mid, float("-inf"), float("inf")):
                b = batch_arrays(payload)
                times.append(b.ts)
                if frames < 2000:  # a sample of batches is enough for their size
                    frame = p.encode(p.MetricsBatch(stream="0" * 16, seq=1, ts=b.ts.tolist(), keys=b.keys,
                                                    values=np.ascontiguousarray(b.values).tobytes(), text=b.text))
                    frames, frame_bytes = frames + 1, frame_bytes + len(frame)
            if times:
                ts = np.round(np.concatenate(times) * 1000.0)  # chunks keep times to the ms
                n += len(ts)
                twice += len(ts) - len(np.unique(ts))
    finally:
        store.close()
    return {"stored": n, "stored_twice": twice, "batch_bytes": frame_bytes // frames if frames else 0}


def median_time(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t)
        if isinstance(r, subprocess.CompletedProcess) and r.returncode:  # a failure is no timing
            why = (r.stderr or "").strip()[:300]
            raise RuntimeError(f"{' '.join(r.args[2:])}: exit {r.returncode}: {why}")
    return statistics.median(times)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes and their children, so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for q in [proc, *proc.children(recursive=True)]:
                total += sum(q.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def held(env: Env, answers: list | None = None) -> int | None:
    """Machines holding their metrics back (protocol 1.4, after a storm); None: no answer.
    ``answers`` gets how long ``status`` took (None when it did not answer)."""
    t = time.monotonic()
    try:
        n = env.json("status", attempts=1).get("metrics", {}).get("held")
    except (RuntimeError, subprocess.TimeoutExpired):
        n = None
    if answers is not None:
        answers.append(None if n is None else time.monotonic() - t)
    return n


def wait_sending(env: Env, t0: float, timeout: float = 900) -> tuple[float | str, dict]:
    """Seconds from ``t0`` until no machine holds its metrics, or how many still did at
    ``timeout`` (their history comes later; the run goes on); and how an operator's
    ``status`` answered meanwhile (the fleet catching up takes the control plane's CPU)."""
    answers: list = []
    try:
        wait_until(lambda: held(env, answers) == 0, timeout, "every machine sending metrics", 5)
        flowing: float | str = round(time.monotonic() - t0, 1)
    except TimeoutError:
        still = held(env, answers)
        flowing = f"> {round(time.monotonic() - t0)} ({'?' if still is None else still} held)"
    try:  # how often agents' reads paused for operators and handshakes (readpause.py), in all
        paused = env.json("status", attempts=3).get("event_loop", {})
    except (RuntimeError, subprocess.TimeoutExpired):
        paused = {}
    return flowing, {**answer_times(answers), "agent_read_pauses": paused.get("agent_read_pauses")}


def answer_times(answers: list[float | None]) -> dict:
    """How a series of operator requests answered: seconds each, None for no answer."""
    took = [a for a in answers if a is not None]
    return {"asked": len(answers), "failed": len(answers) - len(took),
            "median_s": round(float(np.median(took)), 2) if took else None,
            "p90_s": round(float(np.percentile(took, 90)), 2) if took else None,
            "max_s": round(max(took), 2) if took else None}


def busy(cpu_s: float, wall_s: float) -> float:
    """Share of the box's cores that ``cpu_s`` seconds of CPU over ``wall_s`` took, in %."""
    return round(100 * cpu_s / max(wall_s, 0.1) / (os.cpu_count() or 1), 1)


#: py-spy's samples a second: at 50 it took ~9 % of a core, on 2 cores a first join of 10,000
#: already saturates.
PROFILE_RATE = 10


def profile(pid: int, out: Path, seconds: float) -> subprocess.Popen:
    """py-spy sampling ``pid`` for ``seconds`` into ``out`` (collapsed stacks, CPU only)."""
    spy = Path(PY).with_name("py-spy")
    return subprocess.Popen([str(spy) if spy.exists() else "py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
                             "--duration", str(int(seconds)), "--rate", str(PROFILE_RATE), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def storm(env: Env, server: subprocess.Popen, port: int, n: int, sim: subprocess.Popen, how: str,
          profile_to: Path | None) -> tuple[subprocess.Popen, dict]:
    """Stop the control plane (``restart``: SIGTERM; ``kill``: SIGKILL, no shutdown at all),
    start it again at once; time until all ``n`` machines are live again."""
    before = env.json("machines", "ls")
    if how == "kill":
        server.kill()
    else:
        server.send_signal(signal.SIGTERM)
    server.wait(120)
    t0 = time.monotonic()
    sim_cpu0 = cpu_seconds([sim.pid])
    load0 = os.getloadavg()[0]
    server = start_server(env, port)
    spy = profile(server.pid, profile_to, 600) if profile_to else None
    wait_live(env, n, 900, f"everyone back after the {how}")
    took = time.monotonic() - t0
    server_cpu, sim_cpu = cpu_seconds([server.pid]), cpu_seconds([sim.pid]) - sim_cpu0
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    flowing, status_meanwhile = wait_sending(env, t0)
    after = env.json("machines", "ls")
    return server, {"all_live_s": round(took, 1), "all_sending_s": flowing,
                    "status_while_sending": status_meanwhile,
                    "box_busy_percent": busy(server_cpu + sim_cpu, took),
                    "duplicates": len(after) - len(before),
                    "ids_changed": sum(a["id"] != b["id"] for a, b in zip(
                        sorted(before, key=lambda m: m["name"]), sorted(after, key=lambda m: m["name"]))),
                    "server_cpu_s": round(server_cpu, 1), "simulator_cpu_s": round(sim_cpu, 1),
                    "load_before": round(load0, 1)}


def storm_floor(n: int, processes: int) -> dict:
    """N bare asyncssh handshakes (with a session each) on both sides, as fast as they go."""
    fport = free_port()
    fserver = subprocess.Popen([PY, "-m", "bench.floor", "server", "--port", str(fport)], stdout=subprocess.PIPE,
                               text=True, cwd=report.ROOT)
    fserver.stdout.readline()
    per = -(-n // processes)
    cpu0, t0 = cpu_seconds([fserver.pid]), time.monotonic()
    clients = [subprocess.Popen([PY, "-m", "bench.floor", "storm", "--port", str(fport), "--count",
                                 str(min(per, n - k * per)), "--concurrency", str(128 // processes)],
                                stdout=subprocess.PIPE, text=True, cwd=report.ROOT)
               for k in range(processes) if n - k * per > 0]
    outs = [json.loads(c.communicate(timeout=900)[0].splitlines()[-1]) for c in clients]
    took, server_cpu = time.monotonic() - t0, cpu_seconds([fserver.pid]) - cpu0
    fserver.send_signal(signal.SIGTERM)
    fserver.wait(60)
    return {"all_connected_s": round(took, 1), "failed": sum(o["failed"] for o in outs),
            "server_cpu_s": round(server_cpu, 1), "client_cpu_s": round(sum(o["client_cpu_s"] for o in outs), 1)}


def run(n: int, window: float, processes: int, storms: list[str], profile_dir: Path | None) -> dict:
    env = Env()
    port = free_port()
    server = start_server(env, port)
    result: dict = {"agents": n, "load_at_start": round(os.getloadavg()[0], 1)}
    sim = None
    try:
        join = env.cli("token", "create", "--uses", str(n), "--ttl", "2h").stdout.strip()
        t0 = time.monotonic()
        sim = env.spawn("simulate", "--agents", str(n), "--processes", str(processes), "--join", join,
                        "--state-dir", str(env.root / "sim"), "--ramp", str(max(5, n / 400)), log="simulate")
        spy = profile(server.pid, profile_dir / f"join-{n}.txt", 600) if profile_dir else None
        wait_live(env, n, 300 + n / 5, f"{n} agents live")
        result["first_join_s"] = round(time.monotonic() - t0, 1)
        result["first_join_server_cpu_s"] = round(cpu_seconds([server.pid]), 1)
        result["first_join_simulator_cpu_s"] = round(cpu_seconds([sim.pid]), 1)
        result["first_join_box_busy_percent"] = busy(
            result["first_join_server_cpu_s"] + result["first_join_simulator_cpu_s"], result["first_join_s"])
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        result["first_join_all_sending_s"], result["first_join_status_while_sending"] = wait_sending(env, t0)
        time.sleep(15)  # let batches settle into their 5 s rhythm

        if window > 0:
            cpu, rss = cpu_window(server.pid, window)
            st = env.json("status", attempts=10)  # the fleet may still be catching up
            result["fanin"] = {"cpu_percent": round(cpu, 1), "rss_mb": round(rss),
                               "lag_p50_s": st["metrics"]["sample_to_stored_lag"]["p50_s"],
                               "lag_p99_s": st["metrics"]["sample_to_stored_lag"]["p99_s"]}
            result["cli"] = {
                "machines_ls_json_s": round(median_time(lambda: env.cli("machines", "ls", "--json"), 3), 3),
                "machines_ls_json_floor_s": round(median_time(lambda: env.cli("status", "--json"), 3), 3),
            }
            env.open_shared()  # the same two through one shared connection
            result["cli"]["machines_ls_json_shared_s"] = round(median_time(
                lambda: env.cli("machines", "ls", "--json", shared=True), 3), 3)
            result["cli"]["status_json_shared_s"] = round(median_time(
                lambda: env.cli("status", "--json", shared=True), 3), 3)
            env.cli("disconnect", shared=True)
            if profile_dir:  # after the measured window, so that sampling does not add to it
                profile(server.pid, profile_dir / f"fanin-{n}.txt", window).wait(window + 60)

        # Reconnect storms: the control plane restarts under N agents, cleanly, then killed.
        result["storms"] = {}
        for how in storms:
            server, result["storms"][how] = storm(env, server, port, n, sim, how,
                                                  profile_dir / f"storm-{how}-{n}.txt" if profile_dir else None)
            time.sleep(10)

        # Stop the agents; compare what they took with what was stored.
        sim.send_signal(signal.SIGINT)
        sim.wait(120)
        totals = [json.loads(line) for line in (env.root / "simulate.out").read_text().splitlines() if line]
        taken = sum(t["samples_taken"] for t in totals)
        pending = sum(t["samples_pending"] for t in totals)
        dropped = sum(t["samples_dropped"] for t in totals)
        server.send_signal(signal.SIGTERM)
        server.wait(120)
        stored = stored_samples(env.db)
        result["samples"] = {"taken": taken, "stored": stored["stored"], "pending_at_stop": pending,
                             "dropped": dropped,
                             "lost": max(0, taken - pending - (stored["stored"] - stored["stored_twice"])) + dropped,
                             "stored_twice": stored["stored_twice"]}
        result["batch_bytes"] = stored["batch_bytes"]
    except BaseException:
        print(f"fleet: logs of the failed run at {env.root}", file=sys.stderr)
        raise
    else:
        env.remove()
    finally:
        for p in (server, sim):
            if p is not None and p.poll() is None:
                stop(p)

    if storms:
        result["storm_floor"] = storm_floor(n, processes)
    if window <= 0:
        return result
    # The floor of fan-in: bare asyncssh connections carrying the same bytes.
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


def stop(p: subprocess.Popen, grace: float = 120) -> None:
    """SIGTERM, then SIGKILL past ``grace``: cleaning up after a failed run must not hide
    why it failed (a control plane saturated on purpose can take minutes to stop)."""
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def help_times() -> dict:
    env = Env()
    return {"help_s": round(median_time(lambda: env.cli("--help")), 3),
            "python_floor_s": round(median_time(lambda: subprocess.run([PY, "-c", "pass"])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, action="append")
    ap.add_argument("--window", type=float, default=30,
                    help="seconds of steady fan-in measured (0: no fan-in, CLI or fan-in floor)")
    ap.add_argument("--processes", type=int, default=2, help="simulator worker processes")
    ap.add_argument("--storm", action="append", choices=["restart", "kill"],
                    help="reconnect storms, in order (default: restart, then kill)")
    ap.add_argument("--profile-dir", type=Path,
                    help="py-spy the control plane during the first join, steady fan-in (after the measured "
                         "window) and each storm (collapsed stacks here)")
    ap.add_argument("--json-out", type=Path, help="write the results here only (not bench/results/, not the doc)")
    args = ap.parse_args()
    sizes = args.agents or [1000, 5000, 10000]
    storms = args.storm or ["restart", "kill"]
    if args.profile_dir:
        if not shutil.which("py-spy"):
            ap.error("--profile-dir needs py-spy on PATH (pip install py-spy)")
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for n in sizes:
        try:
            runs.append(run(n, args.window, args.processes, storms, args.profile_dir))
        except Exception as exc:  # noqa: BLE001 - report what failed and go on
            runs.append({"agents": n, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
        return
    if all("error" in r for r in runs):
        sys.exit("fleet: every run failed; docs/performance.md and bench/results/ left as they were")
    cli = help_times()
    report.write("fleet", ("python -m bench.fleet " + " ".join(shlex.quote(a) for a in sys.argv[1:])).strip(),
                 {"runs": runs, "cli": cli}, markdown(runs, cli))


def _answers(a: dict | None) -> str:
    if not a or not a["asked"]:
        return "-"
    took = f"{a['median_s']} / {a['max_s']} s" if a["median_s"] is not None else "none"
    return f"{took}, {a['failed']} of {a['asked']} failed"


def markdown(runs: list[dict], cli: dict) -> str:
    rows, storm_rows = [], []
    for r in runs:
        if "error" in r:
            rows.append(f"| {r['agents']:,} | failed: {r['error']} ||||||||||")
            continue
        s = r["samples"]
        if "fanin" in r:
            f = r["fanin"]
            rows.append(
                f"| {r['agents']:,} | {f['cpu_percent']} % | {r['floor']['cpu_percent']} % "
                f"| {r['cpu_ratio_to_floor']}x | {f['rss_mb']} MB | {s['lost']} | {s['stored_twice']} "
                f"| {f['lag_p50_s']} / {f['lag_p99_s']} s | {r['cli']['machines_ls_json_s']} s "
                f"| {r['cli'].get('machines_ls_json_shared_s', '-')} s |")
        fl = r.get("storm_floor", {})
        for how, st in r["storms"].items():
            storm_rows.append(
                f"| {r['agents']:,} | {how} | {st['all_live_s']} s | {st.get('all_sending_s', '-')} s "
                f"| {fl.get('all_connected_s', '-')} s "
                f"| {st['server_cpu_s']} s | {fl.get('server_cpu_s', '-')} s | {st['simulator_cpu_s']} s "
                f"| {fl.get('client_cpu_s', '-')} s | {st.get('box_busy_percent', '-')} % "
                f"| {_answers(st.get('status_while_sending'))} | {st['duplicates']} | {st['load_before']} |")
        storm_rows.append(f"| {r['agents']:,} | first join | {r['first_join_s']} s "
                          f"| {r.get('first_join_all_sending_s', '-')} s | "
                          f"| {r['first_join_server_cpu_s']} s | | {r.get('first_join_simulator_cpu_s', '-')} s "
                          f"| | {r.get('first_join_box_busy_percent', '-')} % "
                          f"| {_answers(r.get('first_join_status_while_sending'))} | | {r['load_at_start']} |")
    return (
        "## Fleet: fan-in, reconnect storm, CLI (`bench/fleet.py`)\n\n"
        "N simulated machines (`centrality simulate`, mixed profile, 1 Hz samples in 5 s batches) against one "
        "control plane on SQLite, both on this 2-core machine. Floor = the same N bare asyncssh connections "
        "carrying the same bytes (`bench/floor.py`), measured in the same run. Samples are counted through the "
        "store's own read path (chunks and staged batches) after both storms. `machines ls --json`: medians of 3, "
        "each a new CLI process; `shared connection`: the same through one connection kept open "
        "(`CENTRALITY_PERSIST`).\n\n"
        "| agents | control-plane CPU | floor CPU | ratio | RSS | samples lost | stored twice | lag p50 / p99 "
        "| `machines ls --json` | shared connection |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) +
        "\n\nReconnect storms (`restart`: SIGTERM and start again; `kill`: SIGKILL, no shutdown) and the first "
        "join, against their floor: the same N bare asyncssh handshakes with a session each, 128 at a time, "
        "both sides on this box (`bench/floor.py storm`). CPU columns are seconds of CPU until all are live; "
        "`all sending`: until no machine holds its metrics back any more (protocol 1.4); `box busy`: the "
        "control plane's and the simulator's CPU over the cores the box has, until all are live; `status` "
        "meanwhile: how an operator's `centrality status` answered between all live and all sending (asked "
        "every 5 s or so; median / slowest, and how many of them got no answer).\n\n"
        "| agents | what | all live | all sending | floor | control-plane CPU | floor server CPU | simulator CPU "
        "| floor client CPU | box busy | `status` meanwhile | new machines | load before |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(storm_rows) +
        f"\n\n`centrality --help` cold start: {cli['help_s']} s (floor, `python -c pass`: {cli['python_floor_s']} s)."
        "\n\nGoals: 10,000 agents with 0 samples lost and p99 <= 6 s, RSS <= 1 GiB, CPU <= 2x the floor, "
        "storm (restart and kill) <= 60 s, first join <= 120 s, `--help` <= 0.3 s, "
        "`machines ls --json` at 10,000 <= 1 s.")


if __name__ == "__main__":
    main()
