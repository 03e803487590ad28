"""An operator on a box short of CPU: how `centrality status` answers.

A control plane and ``centrality simulate`` with N machines share one core
(its affinity, inherited by every process of the run): at 10,000 the core
is too small for all of them to send (most stay held, control_plane/holds.py),
as on a control plane short of CPU for its fleet. Once all are live (or the join has run
``--join-timeout``), ``status --json`` is asked
``--asks`` times, one after another, each a new CLI process and SSH
handshake, as an operator would; it records how long each took, how many got
no answer, how late the loop ran and how often agents' reads paused for the
operator (``control_plane/readpause.py``).

    python -m bench.one_core --agents 10000

Run it on two trees to compare code; nothing else should run on the box.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from . import fleet, report

#: Seconds one ``status`` may take before it counts as no answer (the login grace is 30 s).
ASK_TIMEOUT = 40.0


def ask(env: fleet.Env) -> tuple[float | None, dict]:
    t = time.monotonic()
    try:
        r = env.cli("status", "--json", timeout=ASK_TIMEOUT)
        answer = json.loads(r.stdout)
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None, {}
    return time.monotonic() - t, answer


def run(n: int, asks: int, join_timeout: float, core: int, ramp: float) -> dict:
    os.sched_setaffinity(0, {core})  # inherited by the control plane, simulator and CLIs
    env = fleet.Env()
    port = fleet.free_port()
    server = fleet.start_server(env, port)
    sim = None
    try:
        join = env.cli("token", "create", "--uses", str(n), "--ttl", "2h").stdout.strip()
        t0 = time.monotonic()
        sim = env.spawn("simulate", "--agents", str(n), "--processes", "1", "--join", join,
                        "--state-dir", str(env.root / "sim"), "--ramp", str(ramp), log="simulate")
        try:
            fleet.wait_until(lambda: fleet.live_in_store(env) >= n, join_timeout, "all live", 2)
        except TimeoutError:
            pass
        result: dict = {"agents": n, "ramp_s": ramp, "live_when_asked": fleet.live_in_store(env),
                        "asked_after_s": round(time.monotonic() - t0, 1)}
        took, lags, held = [], [], None
        for _ in range(asks):
            seconds, answer = ask(env)
            took.append(seconds)
            if answer.get("event_loop"):
                lags.append(answer["event_loop"]["lag_s"])
            held = answer.get("metrics", {}).get("held", held)
        last = ask(env)[1].get("event_loop", {})
        result.update({
            **fleet.answer_times(took),
            "loop_lag_median_s": round(float(np.median(lags)), 2) if lags else None,
            "agent_read_pauses": last.get("agent_read_pauses"),
            "agent_reads_paused_s": last.get("agent_reads_paused_s"), "held": held,
        })
        return result
    finally:
        for p in (sim, server):
            if p is not None and p.poll() is None:
                fleet.stop(p)
        env.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--asks", type=int, default=20)
    ap.add_argument("--ramp", type=float, default=300,
                    help="seconds over which the machines connect")
    ap.add_argument("--join-timeout", type=float, default=600)
    ap.add_argument("--core", type=int, default=0, help="the one core everything runs on")
    ap.add_argument("--json-out", type=str, help="write the result here (not bench/results/)")
    args = ap.parse_args()
    result = run(args.agents, args.asks, args.join_timeout, args.core, args.ramp)
    print(json.dumps(result), file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
        return
    command = "python -m bench.one_core " + " ".join(sys.argv[1:])
    report.write("one_core", command, result, markdown(result))


def markdown(r: dict) -> str:
    held = "?" if r["held"] is None else f"{r['held']:,}"
    return (
        "## An operator on a box short of CPU (`bench/one_core.py`)\n\n"
        f"The control plane and {r['agents']:,} simulated machines on one core, connecting over {r['ramp_s']:g} s; "
        f"{r['live_when_asked']:,} live when asked, {r['asked_after_s']} s after the start, {held} of them "
        "still holding their metrics back (held while handshakes came in a storm, released as fast as the control "
        "plane keeps up: `control_plane/holds.py`). `centrality status --json` asked "
        f"{r['asked']} times, one after another (a new process and SSH handshake each); agents' reads paused: for "
        "operators and handshakes while the event loop ran late (`control_plane/readpause.py`).\n\n"
        "| answered | median | p90 | slowest | event loop late (median) | agents' reads paused |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| {r['asked'] - r['failed']} of {r['asked']} | {r['median_s']} s | {r['p90_s']} s | {r['max_s']} s "
        f"| {r['loop_lag_median_s']} s | {r['agent_read_pauses']} times, {r['agent_reads_paused_s']} s |")


if __name__ == "__main__":
    main()
