"""Replicas on one Postgres: fan-in over 1 vs 2 replicas, and failover after kill -9.

    python -m bench.replicas --agents 1000 --window 30

For each replica count R (1, then 2): a fresh database on one Postgres server,
R `centrality server --replica` processes, and N simulated machines (one
`centrality simulate` process, joined with every replica's address, so they
spread over the replicas). Once all are live and settled, the CPU of all the
replica processes together is measured over a window; the agents send the same
messages at the same rates in both runs (a heartbeat every 5 s and a metric
batch every 5 s each), so the figure to compare is CPU per agent-message, R=2
against R=1 (goal: within 1.2x).

Then, with R=2, one replica is killed with SIGKILL: failover time is until the
survivor holds every machine (`replica_holdings`, read from Postgres) and all
are live there; duplicates are machines stored twice under one name.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from . import report
from .fleet import PY, cpu_window, free_port, wait_until

HEARTBEAT_S = 5.0
BATCH_S = 5.0
#: Settings of every replica: the lease as a real deployment would have it.
LEASE = ("--replica-lease", "15s", "--replica-renew-interval", "5s")


class Replica:
    def __init__(self, root: Path, name: str, db: str) -> None:
        self.name, self.db = name, db
        self.home = root / name
        self.port = free_port()
        self.env = {**os.environ, "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / "config"),
                    "XDG_DATA_HOME": str(self.home / "data"), "CENTRALITY_CONTEXT": "local",
                    "CENTRALITY_CONNECTION_RATE_PER_SOURCE": "0", "CENTRALITY_MAX_ENROLLING_PER_SOURCE": "0"}
        self.log = self.home / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [PY, "-m", "centrality_cli", "server", "--listen", self.address, "--db", self.db,
             "--replica", self.name, "--heartbeat-interval", f"{HEARTBEAT_S:g}s", "--limbo-after", "20s",
             "--dead-after", "1h", *LEASE], env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        wait_until(lambda: b"listening on" in self.log.read_bytes(), 60, f"{self.name} start", 0.1)

    def fingerprint(self) -> str:
        for line in self.log.read_text().splitlines():
            if "host key" in line and "SHA256:" in line:
                return "SHA256:" + line.split("SHA256:", 1)[1].split()[0].rstrip("),")
        raise RuntimeError(f"no host key in {self.log}")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "centrality_cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(120)


def holdings(db: str) -> dict[str, int]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "select replica, count(*) from replica_holdings group by replica")).all())
    finally:
        engine.dispose()


def machines_stored(db: str) -> tuple[int, int]:
    """(rows, distinct names) of stored machines."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text("select count(*), count(distinct name) from machines")).one())
    finally:
        engine.dispose()


def fresh_db(admin_url: str, name: str) -> str:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}"'))
        conn.execute(sa.text(f'create database "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def run(admin_url: str, root: Path, n: int, r: int, window: float, failover: bool) -> dict:
    db = fresh_db(admin_url, f"bench_replicas_{r}")
    replicas = [Replica(root / f"r{r}", f"cp-{chr(ord('a') + i)}", db) for i in range(r)]
    sim = None
    result: dict = {"replicas": r, "agents": n}
    try:
        for rep in replicas:
            rep.start()
        pins = [a for rep in replicas[1:] for a in ("--pin", rep.fingerprint())]
        token = replicas[0].cli("token", "create", "--uses", str(n), "--ttl", "2h", "--json", "--address",
                                ",".join(rep.address for rep in replicas), *pins)
        if token.returncode:
            raise RuntimeError(f"token create: {token.stderr.strip()}")
        join = json.loads(token.stdout)["join"]
        t0 = time.monotonic()
        sim = subprocess.Popen(
            [PY, "-m", "centrality_cli", "simulate", "--agents", str(n), "--join", join,
             "--state-dir", str(root / f"sim{r}"), "--ramp", str(max(5, n / 400)),
             "--batch-interval", f"{BATCH_S:g}"], env=replicas[0].env,
            stdout=subprocess.DEVNULL, stderr=open(root / f"sim{r}.log", "w"))
        wait_until(lambda: sum(holdings(db).values()) >= n, 60 + n / 10, f"{n} agents live", 2)
        result["first_join_s"] = round(time.monotonic() - t0, 1)
        result["held"] = holdings(db)
        time.sleep(15)
        with concurrent.futures.ThreadPoolExecutor(len(replicas)) as pool:
            cpus = list(pool.map(lambda rep: cpu_window(rep.proc.pid, window), replicas))
        total = sum(c for c, _ in cpus)
        messages_per_s = n * (1 / HEARTBEAT_S + 1 / BATCH_S)
        result["fanin"] = {"cpu_percent": round(total, 1), "per_replica_cpu": [round(c, 1) for c, _ in cpus],
                           "per_replica_rss_mb": [round(m) for _, m in cpus],
                           "messages_per_s": messages_per_s,
                           "cpu_us_per_message": round(total / 100 * 1e6 / messages_per_s, 1)}
        if failover:
            victim = replicas[1]
            had = holdings(db).get(victim.name, 0)
            victim.stop(signal.SIGKILL)
            t0 = time.monotonic()
            wait_until(lambda: holdings(db).get(replicas[0].name, 0) >= n, 600, "every machine on the survivor", 0.5)
            rows, names = machines_stored(db)
            result["failover"] = {"moved": had, "all_on_survivor_s": round(time.monotonic() - t0, 1),
                                  "lease_s": float(LEASE[1].rstrip("s")), "duplicates": rows - names,
                                  "machines": rows}
    finally:
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                sim.kill()
        for rep in replicas:
            rep.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--window", type=float, default=30, help="seconds of steady fan-in measured")
    args = ap.parse_args()
    sys.path.insert(0, str(report.ROOT))
    from tests.fixtures.postgres import start_postgres

    root = Path(tempfile.mkdtemp(prefix="centrality-replicas-"))
    pg = start_postgres()
    try:
        one = run(pg.url(), root, args.agents, 1, args.window, failover=False)
        two = run(pg.url(), root, args.agents, 2, args.window, failover=True)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    ratio = round(two["fanin"]["cpu_us_per_message"] / max(one["fanin"]["cpu_us_per_message"], 0.01), 2)
    f = two["failover"]
    rows = "\n".join(
        f"| {x['replicas']} | {x['agents']:,} | {', '.join(f'{k} {v}' for k, v in sorted(x['held'].items()))} | "
        f"{x['fanin']['cpu_percent']} % ({' + '.join(f'{c} %' for c in x['fanin']['per_replica_cpu'])}) | "
        f"{x['fanin']['cpu_us_per_message']} µs | {' + '.join(f'{m} MB' for m in x['fanin']['per_replica_rss_mb'])} | "
        f"{x['first_join_s']} s |" for x in (one, two))
    md = ("## Replicas: fan-in over 1 vs 2, failover after kill -9 (`bench/replicas.py`)\n\n"
          f"{args.agents:,} simulated machines (mixed profile, a heartbeat and a 5-sample batch every 5 s each) "
          "joined with every replica's address, against R `centrality server --replica` processes on one "
          "Postgres; all on this 2-core machine with the simulator and Postgres.\n\n"
          "| replicas | agents | machines held | replicas' CPU | CPU per agent-message | RSS | first join |\n"
          "| --- | --- | --- | --- | --- | --- | --- |\n" + rows + "\n\n"
          f"CPU per agent-message, 2 replicas against 1: **{ratio}x** (goal <= 1.2x).\n\n"
          f"Failover: replica cp-b killed with SIGKILL holding {f['moved']:,} machines; all {args.agents:,} "
          f"held and live on cp-a after **{f['all_on_survivor_s']} s** (lease {f['lease_s']:g} s: the survivor "
          f"may move them only once the lease lapsed), {f['duplicates']} duplicate machines.\n")
    report.write("replicas", f"python -m bench.replicas --agents {args.agents} --window {args.window:g}",
                 {"one": one, "two": two, "ratio": ratio}, md)


if __name__ == "__main__":
    main()
