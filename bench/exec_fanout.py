"""Fan-out exec: ``centrality exec --all -- true`` over N agents, against a new SSH
connection per host with a fan-out of 64 (the way pdsh and ClusterShell work).

Our side: a real ``centrality server`` process, and N real agents
(``agent_runtime.link.Agent``, fake ``cpu`` collectors) run by ``centrality
simulate`` in worker processes, enrolled with one join token (``--uses N``).
The exec is timed two ways: as a request on an operator connection that is
already open (what the control plane and agents cost), and as the whole
``centrality exec`` CLI command (Python start-up and the operator's SSH
handshake included: what a person waits for).

Baseline: real OpenSSH ``sshd`` processes (several, on 127.0.0.2..., so no one
sshd's MaxStartups throttles the fan-out) play the N hosts; a client opens a new
SSH connection per host, runs ``true`` and closes it, at most 64 at a time. The
client is asyncssh in one process, which is cheaper than forking an ``ssh``
per host as pdsh/clush do: the baseline is, if anything, flattered. The hosts'
sessions get an empty ``HOME`` (``SetEnv`` in their sshd_config): bash sources
``~/.bashrc`` for commands run over SSH, and this box's root ``.bashrc`` runs
``pyenv init`` (about 100 ms of CPU per command), which would measure a shell
profile, not SSH.

    python -m bench.exec_fanout --agents 1000
    python -m bench.exec_fanout --agents 1000 --replicas 2

With ``--replicas N`` (N >= 2) it measures the fleet-wide exec instead: N
``centrality server --replica`` processes on one Postgres (started here, as the
tests start it), the agents joined with every address so that they spread
over the replicas, and ``exec --all`` asked of the first replica, which runs
its own machines and has each peer run the machines it holds
(control_plane/peer_exec.py). No baseline in that mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil

from centrality_core.runtime import use_uvloop

from . import report
from .ingest import free_port

ROOT = report.ROOT


def _env(tmp: Path) -> dict:
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp / "data"),
            "HOME": str(tmp),
            # every simulated machine connects from 127.0.0.1: no per-address limits
            "CENTRALITY_CONNECTION_RATE_PER_SOURCE": "0", "CENTRALITY_MAX_ENROLLING_PER_SOURCE": "0"}


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU of these processes and of their children they have reaped."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _cli(env: dict, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "centrality_cli", *args], env=env, cwd=str(ROOT), **kw)


async def centrality_side(agents: int, processes: int, reps: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="centrality-bench-exec-"))
    env = _env(tmp)
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")})
    port = free_port()
    log = tmp / "server.log"
    with open(log, "wb") as f:  # a file, not a pipe: nobody has to keep draining it
        server = _cli(env, "server", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp}/cp.db",
                      "--heartbeat-interval", "10s", "--limbo-after", "60s", stderr=f)
    sim = None
    try:
        while "listening on" not in log.read_text(errors="replace"):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        from centrality_core.client import OperatorClient

        async with OperatorClient("local") as op:
            token = await op.request("token", "create", "--uses", str(agents), "--ttl", "1h")
            sim = _cli(env, "simulate", "--agents", str(agents), "--processes", str(processes), "--profile", "cpu",
                       "--join", token["join"], "--sample-interval", "30", "--batch-interval", "30",
                       "--state-dir", str(tmp / "sim"), "--ramp", str(max(1.0, agents / 250)),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.monotonic()
            await op.request("wait", "--live", str(agents), "--timeout", "600s")
            enrolled_s = time.monotonic() - t0
            await asyncio.sleep(2)  # let the enrolment writes settle
            await _exec(op)  # warm-up
            proc = psutil.Process(server.pid)
            workers = [psutil.Process(sim.pid), *psutil.Process(sim.pid).children(recursive=True)]
            load = os.getloadavg()[0]
            in_process, cpu, total_cpu = [], [], []
            for _ in range(reps):
                c0, a0 = cpu_seconds([proc]), cpu_seconds(workers)
                t0 = time.monotonic()
                summary = await _exec(op)
                in_process.append(time.monotonic() - t0)
                await asyncio.sleep(0.2)  # let the workers reap the last `true`s
                cpu.append(cpu_seconds([proc]) - c0)
                total_cpu.append(cpu[-1] + cpu_seconds(workers) - a0)
                assert summary["counts"] == {"ok": agents}, summary
                await asyncio.sleep(0.5)
        whole = []
        for _ in range(reps):
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "centrality_cli", "exec", "--all", "--yes", "--json", "--",
                                "true"], env=env, cwd=str(ROOT), capture_output=True)
            whole.append(time.monotonic() - t0)
            assert r.returncode == 0, r.stderr[-500:]
        return {"agents": agents, "agent_processes": processes, "enrolment_s": round(enrolled_s, 1),
                "request_s": [round(x, 3) for x in in_process], "request_median_s": round(statistics.median(in_process), 3),
                "cli_s": [round(x, 3) for x in whole], "cli_median_s": round(statistics.median(whole), 3),
                "server_cpu_s_median": round(statistics.median(cpu), 3),
                "total_cpu_s_median": round(statistics.median(total_cpu), 3), "loadavg_before": round(load, 1)}
    finally:
        for p in (sim, server):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


async def _exec(op) -> dict:
    last = None
    async for line in op.stream("exec", "--all", "--yes", "--", "true", check=False):
        last = line
    return last


async def baseline(hosts: int, sshds: int, fanout: int, reps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.sshd import start_sshd

    servers = [start_sshd(f"127.0.0.{2 + i}") for i in range(sshds)]
    try:
        key = asyncssh.read_private_key(str(servers[0].client_key_path))
        home = Path(tempfile.mkdtemp(prefix="centrality-bench-home-"))
        for s in servers:
            if s is not servers[0]:  # one client key for all hosts
                Path(s.workdir / "authorized_keys").write_text(Path(servers[0].workdir / "authorized_keys").read_text())
            with open(s.workdir / "sshd_config", "a") as f:
                f.write(f"SetEnv HOME={home}\n")  # no ~/.bashrc: measure SSH, not a shell profile
            s.process.send_signal(signal.SIGHUP)  # sshd re-reads its config (and re-executes itself)
        for s in servers:
            for _ in range(100):
                try:
                    async with asyncssh.connect(s.host, s.port, username=s.user, client_keys=[key],
                                                known_hosts=None, agent_path=None) as conn:
                        r = await conn.run("echo $HOME", check=True)
                    assert r.stdout.strip() == str(home), r.stdout
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        sem = asyncio.Semaphore(fanout)
        failures = []

        async def one(i: int) -> None:
            s = servers[i % len(servers)]
            async with sem:
                try:
                    async with asyncssh.connect(s.host, s.port, username=s.user, client_keys=[key],
                                                known_hosts=None, agent_path=None,
                                                encryption_algs=["aes128-gcm@openssh.com"]) as conn:
                        r = await conn.run("true", check=False)
                        if r.exit_status != 0:
                            failures.append(r.exit_status)
                except (OSError, asyncssh.Error) as exc:
                    failures.append(str(exc))

        times, cpus = [], []
        here = psutil.Process()
        sshd_procs = [psutil.Process(s.process.pid) for s in servers]
        load = os.getloadavg()[0]
        for _ in range(reps):
            c0 = cpu_seconds([here, *sshd_procs])
            t0 = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(hosts)))
            times.append(time.monotonic() - t0)
            await asyncio.sleep(0.5)  # let sshd reap its sessions
            cpus.append(cpu_seconds([here, *sshd_procs]) - c0)
        return {"hosts": hosts, "sshd_processes": sshds, "fanout": fanout, "failures": len(failures),
                "failure_sample": [str(f) for f in failures[:3]],
                "seconds": [round(x, 2) for x in times], "median_s": round(statistics.median(times), 2),
                "total_cpu_s_median": round(statistics.median(cpus), 2), "loadavg_before": round(load, 1)}
    finally:
        for s in servers:
            s.stop()


async def replicas_side(agents: int, processes: int, reps: int, n: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import uuid

    import psycopg

    from centrality_core.client import OperatorClient
    from tests.fixtures.postgres import libpq_url, start_postgres
    from tests.fixtures.replicaset import replica_set

    pg = start_postgres()
    try:
        db = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(libpq_url(pg.url()), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        root = Path(tempfile.mkdtemp(prefix="centrality-bench-replicas-"))
        settings = {"heartbeat_interval": "5", "limbo_after": "30", "replica_lease": "15"}
        async with replica_set(root, pg.url(db), n, **settings) as rs:
            t0 = time.monotonic()
            sim = await rs.simulate(agents, profile="cpu", extra=("--processes", str(processes), "--sample-interval",
                                                            "30", "--batch-interval", "30"))
            await rs.wait_live(agents, timeout="600s")
            enrolled_s = time.monotonic() - t0
            with psycopg.connect(libpq_url(rs.db_url)) as conn:
                while True:  # every machine held, and the first replica knows where
                    split = dict(conn.execute("SELECT replica, count(*) FROM replica_holdings GROUP BY replica")
                                 .fetchall())
                    if sum(split.values()) == agents:
                        break
                    await asyncio.sleep(1)
            await asyncio.sleep(3)  # a replica round: each knows who holds what
            os.environ.update(HOME=str(rs.replicas[0].home))
            for var in [v for v in os.environ if v.startswith("XDG_")]:
                del os.environ[var]
            servers = [psutil.Process(r.proc.pid) for r in rs.replicas]
            workers = [psutil.Process(sim.pid), *psutil.Process(sim.pid).children(recursive=True)]
            async with OperatorClient("local") as op:
                await _exec(op)  # warm-up: the peer links are made on first use
                times, cpu, total, load = [], [], [], os.getloadavg()[0]
                for _ in range(reps):
                    c0 = [cpu_seconds([s]) for s in servers]
                    a0 = cpu_seconds(workers)
                    t = time.monotonic()
                    summary = await _exec(op)
                    times.append(time.monotonic() - t)
                    assert summary["counts"] == {"ok": agents}, summary
                    await asyncio.sleep(0.2)
                    cpu.append([round(cpu_seconds([s]) - c, 3) for s, c in zip(servers, c0)])
                    total.append(sum(cpu[-1]) + cpu_seconds(workers) - a0)
                    await asyncio.sleep(0.5)
            whole = []
            for _ in range(reps):
                t = time.monotonic()
                status, out, err = await rs.cli(0, "exec", "--all", "--yes", "--json", "--", "true", timeout=120)
                whole.append(time.monotonic() - t)
                assert status == 0, err[-500:]
        per_replica = [statistics.median(c[i] for c in cpu) for i in range(n)]
        return {"agents": agents, "replicas": n, "agent_processes": processes, "held": split,
                "enrolment_s": round(enrolled_s, 1), "request_s": [round(x, 3) for x in times],
                "request_median_s": round(statistics.median(times), 3), "cli_s": [round(x, 3) for x in whole],
                "cli_median_s": round(statistics.median(whole), 3),
                "replica_cpu_s_median": [round(x, 3) for x in per_replica],
                "total_cpu_s_median": round(statistics.median(total), 3), "loadavg_before": round(load, 1)}
    finally:
        pg.stop()


def replicas_report(args, r: dict) -> None:
    held = ", ".join(f"{name} {count}" for name, count in sorted(r["held"].items()))
    cpu = " + ".join(f"{x:.2f} s" for x in r["replica_cpu_s_median"])
    md = (
        "## Fan-out exec over replicas (`exec --all -- true` asked of one replica)\n\n"
        f"{args.agents} agents (fake `cpu` collectors, `centrality simulate` in {args.processes} processes) "
        f"joined with the addresses of {r['replicas']} `centrality server --replica` processes on one Postgres, "
        f"spread over them by name ({held}). The request is asked of the first replica: it resolves the "
        "targets, runs the machines it holds and has each peer run its own over the peer link "
        "(one sub-request per peer), merging the output into one stream and writing one audit row. "
        "Everything shares one 2-core machine; medians.\n\n"
        "| | machines | time | CPU, every process involved | CPU per replica (first: the one asked) "
        "| load before |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| request on an open operator connection | {args.agents} | **{r['request_median_s']:.2f} s** | "
        f"{r['total_cpu_s_median']:.2f} s | {cpu} | {r['loadavg_before']} |\n"
        f"| whole `centrality exec --json` command | {args.agents} | **{r['cli_median_s']:.2f} s** | | | |\n\n"
        f"Goal: <= 2 s. Repetitions: {min(r['request_s']):.2f}-{max(r['request_s']):.2f} s (request), "
        f"{min(r['cli_s']):.2f}-{max(r['cli_s']):.2f} s (command). The replica asked does more than its share: "
        "besides its own machines it decodes each peer's documents and re-encodes them for the operator. "
        "When the load before is well above the 2 cores, the time measures the box's queue more than the "
        "run; the CPU columns are the steadier comparison with the one-process figure above."
    )
    command = "python -m bench.exec_fanout " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("exec_fanout_replicas", command.strip(), r, md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=2, help="worker processes for the simulated agents")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fanout", type=int, default=64, help="baseline: connections at once")
    ap.add_argument("--sshd", type=int, default=8, help="baseline: sshd processes playing the hosts")
    ap.add_argument("--baseline-reps", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=1,
                    help="2 or more: the fleet-wide exec over that many replicas on one Postgres (no baseline)")
    args = ap.parse_args()
    use_uvloop()
    if args.replicas > 1:
        return replicas_report(args, asyncio.run(replicas_side(args.agents, args.processes, args.reps,
                                                               args.replicas)))
    ours = asyncio.run(centrality_side(args.agents, args.processes, args.reps))
    base = asyncio.run(baseline(args.agents, args.sshd, args.fanout, args.baseline_reps))
    speedup = base["median_s"] / ours["request_median_s"]
    speedup_cli = base["median_s"] / ours["cli_median_s"]
    speedup_cpu = base["total_cpu_s_median"] / max(ours["total_cpu_s_median"], 1e-9)
    md = (
        "## Fan-out exec (`exec --all -- true`) vs a new SSH connection per host\n\n"
        f"{args.agents} agents (real `Agent`s with fake `cpu` collectors, run by `centrality simulate` in "
        f"{args.processes} processes) hold their SSH channels open to one `centrality server`. Baseline: "
        f"{args.agents} hosts played by {args.sshd} real OpenSSH `sshd` processes on 127.0.0.x; a client opens "
        f"a new SSH connection per host (asyncssh, aes128-gcm, ed25519 key), runs `true`, closes it, "
        f"{args.fanout} at a time, as pdsh/clush do with `-f {args.fanout}` (forking an `ssh` per host, as they "
        "do, would cost more still). The hosts' sessions get an empty `HOME`, so bash does not source this "
        "box's `~/.bashrc` (it runs `pyenv init`: ~100 ms of CPU per command, which would measure a shell "
        "profile, not SSH). Everything shares one machine; medians.\n\n"
        "| | machines | time | CPU, every process involved | of which control plane | load before |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| `exec --all -- true`, request on an open operator connection | {args.agents} | "
        f"**{ours['request_median_s']:.2f} s** | {ours['total_cpu_s_median']:.2f} s | "
        f"{ours['server_cpu_s_median']:.2f} s | {ours['loadavg_before']} |\n"
        f"| the same as a whole `centrality exec --json` command (Python start-up, SSH handshake) | "
        f"{args.agents} | **{ours['cli_median_s']:.2f} s** | | | |\n"
        f"| new SSH connection per host, fan-out {args.fanout} | {args.agents} | **{base['median_s']:.1f} s** | "
        f"{base['total_cpu_s_median']:.1f} s | | {base['loadavg_before']} |\n\n"
        f"Speed-up: **{speedup:.0f}x** in time for the request, **{speedup_cli:.0f}x** for the whole command, "
        f"**{speedup_cpu:.0f}x** in CPU (goal: <= 2 s and >= 10x). Baseline failures: {base['failures']}. "
        "Other work shared this 2-core box while it ran (the load average before each part is in the table), "
        f"so times vary from run to run (this run, ours: {min(ours['request_s']):.2f}-{max(ours['request_s']):.2f} s "
        "over its repetitions); the CPU column is the steadier comparison. On our side the work is one `true` "
        "process per machine, "
        f"{2 * args.agents:,} small messages and the JSON lines to the operator; the agents' side, which on a "
        "real fleet is spread over the machines, is here concentrated on the same two cores."

    )
    command = "python -m bench.exec_fanout " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("exec_fanout", command.strip(), {"centrality": ours, "baseline": base,
                                                  "speedup_request": round(speedup, 1),
                                                  "speedup_cli": round(speedup_cli, 1),
                                                  "speedup_cpu": round(speedup_cpu, 1)}, md)


if __name__ == "__main__":
    main()
