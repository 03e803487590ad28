"""How latest values travel between replicas: the peering stream against the store
(docs/performance.md, "Latest values between replicas").

Each round (one second of a fleet's life) every one of ``--machines`` machines
held by replica P has a new sample, and replica A, which serves a dashboard,
must learn the new figures of all of them. Two ways, measured in one process
on this machine:

* **peering stream** (what is built): P builds each machine's fleet row from
  its latest values (``views.fleet_row``) and writes one ``Update`` line on a
  ``subscribe`` channel over a real asyncssh connection, with the link's
  algorithms; A reads it, decodes it (``decode_subscription``) and takes it
  into its ``PeerFeeds``. CPU of both ends; bytes of the line.
* **store**: P upserts each machine's figures into a table of latest values on
  the fixture's Postgres (one multi-row ``INSERT ... ON CONFLICT DO UPDATE``
  per round, as the store writer batches), and A polls the rows newer than
  its last poll. CPU of both clients and of the Postgres server processes; WAL
  written; bytes of the rows read.

    python -m bench.peer_latest --machines 1000 --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import msgspec
import numpy as np
import psutil
import sqlalchemy as sa

from centrality_core.documents import FIGURES, Update, decode_subscription
from centrality_core.lifecycle import Thresholds
from centrality_core.sshlink import algorithms
from control_plane.ingest import Latest
from control_plane.peerfeeds import PeerFeeds
from control_plane.registry import Registry
from control_plane.views import fleet_row

from .floor import AcceptAll

RESULTS = Path(__file__).resolve().parent / "results" / "peer_latest.json"


# ---------------------------------------------------------------------- a fleet


class _Writer:  # what the registry queues for the store: dropped here
    def __getattr__(self, name):
        return lambda *a, **k: None


class _Session:
    protocol = (1, 3)

    def close(self, why: str = "") -> None:
        pass

    def send(self, msg) -> None:
        pass


def keys_of(gpu: bool) -> list[str]:
    """A machine's keys, as the simulator's cpu and gpu8 profiles send them."""
    keys = ["cpu.percent", *(f"cpu[{i}].percent" for i in range(64 if gpu else 16)),
            "mem.used_bytes", "mem.total_bytes", "mem.percent",
            *(f"fs[{m}].{k}" for m in ("/", "/data") for k in ("used_bytes", "total_bytes", "percent")),
            *(f"disk[nvme0n1].{k}" for k in ("read_iops", "write_iops", "read_bytes_per_s", "write_bytes_per_s")),
            *(f"net[eth0].{k}" for k in ("recv_bytes_per_s", "sent_bytes_per_s"))]
    if gpu:
        keys += [f"gpu[{g}].{k}" for g in range(8) for k in
                 ("util_percent", "mem_used_bytes", "mem_total_bytes", "mem_util_percent", "temp_c", "power_w")]
    return keys


def fleet(n: int) -> tuple[Registry, dict[str, Latest], dict[bool, list[str]]]:
    reg = Registry(Thresholds(), _Writer())
    shapes = {False: keys_of(False), True: keys_of(True)}
    latest = {}
    for i in range(n):
        name = f"node-{i:05d}"
        info = {"hostname": f"{name}.lab", "cpu_count": 64 if i % 4 == 0 else 16,
                "gpus": [{"name": "H100"}] * (8 if i % 4 == 0 else 0)}
        reg.register(name, info, (name,), {"pool": "train" if i % 4 == 0 else "web"}, f"SHA256:{name}", _Session())
        latest[name] = Latest()
    return reg, latest, shapes


def new_samples(latest: dict[str, Latest], shapes, now: float, rng: random.Random) -> None:
    for i, (name, l) in enumerate(latest.items()):
        keys = shapes[i % 4 == 0]
        row = np.array([rng.uniform(0, 100) for _ in range(len(keys))])
        l.set(now, keys, row)


# ---------------------------------------------------------------------- peering


async def peering(n: int, rounds: int) -> dict:
    import asyncssh

    reg, latest, shapes = fleet(n)
    rng = random.Random(1)
    encoder = msgspec.json.Encoder()
    ready: asyncio.Queue = asyncio.Queue()

    async def serve(process) -> None:  # P's side of the subscribe channel
        while True:
            line = await ready.get()
            if line is None:
                break
            process.stdout.write(line)
        process.exit(0)

    host_key, client_key = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(AcceptAll, "127.0.0.1", 0, server_host_keys=[host_key],
                                          process_factory=serve, encoding=None, **algorithms())
    port = server.sockets[0].getsockname()[1]
    conn = await asyncssh.connect("127.0.0.1", port, known_hosts=None, client_keys=[client_key],
                                  username="replica", **algorithms())
    process = await conn.create_process("subscribe", encoding=None)
    feeds = PeerFeeds(None, "1s")  # A's record of P's rows (only its intake is used here)
    cpu, sizes = [], []
    try:
        for r in range(rounds + 2):
            now = 1_800_000_000.0 + r
            new_samples(latest, shapes, now, rng)
            t0 = time.process_time()
            rows = [fleet_row(reg, name, latest[name], now, "cp-p") for name in latest]  # P
            line = encoder.encode(Update(ts=now, machines=rows)) + b"\n"
            await ready.put(line)
            got = await process.stdout.readline()  # A
            feeds._take("cp-p", decode_subscription(got))
            feeds.take()
            elapsed = time.process_time() - t0
            assert got == line
            if r >= 2:  # warmed up
                cpu.append(elapsed)
                sizes.append(len(line))
    finally:
        await ready.put(None)
        conn.close()
        server.close()
    return {"cpu_s_per_round": statistics.median(cpu), "bytes_per_round": statistics.median(sizes),
            "cpu_us_per_update": statistics.median(cpu) / n * 1e6, "bytes_per_update": statistics.median(sizes) / n}


# ---------------------------------------------------------------------- store


def store(n: int, rounds: int) -> dict:
    from tests.fixtures.postgres import start_postgres

    pg = start_postgres()
    engine = sa.create_engine(pg.url(), pool_size=2)
    md = sa.MetaData()
    table = sa.Table("latest_values", md,
                     sa.Column("machine_id", sa.Text, primary_key=True), sa.Column("replica", sa.Text),
                     sa.Column("ts", sa.Float, index=True), sa.Column("last_heartbeat", sa.Float),
                     *(sa.Column(f, sa.Float) for f in FIGURES))
    from sqlalchemy.dialects.postgresql import insert

    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(index_elements=["machine_id"],
                                        set_={c: stmt.excluded[c] for c in ["ts", "last_heartbeat", *FIGURES]})
    poll = sa.select(table).where(table.c.ts > sa.bindparam("since"))
    reg, latest, shapes = fleet(n)
    rng = random.Random(1)
    postmaster = psutil.Process(int((pg.datadir / "postmaster.pid").read_text().split()[0]))

    def server_cpu() -> float:
        total = 0.0
        for p in [postmaster, *postmaster.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    try:
        md.create_all(engine)
        cpu, server, wal, read = [], [], [], []
        with engine.connect() as writer, engine.connect() as reader:
            since = 0.0
            for r in range(rounds + 2):
                now = 1_800_000_000.0 + r
                new_samples(latest, shapes, now, rng)
                lsn0 = writer.execute(sa.text("SELECT pg_current_wal_insert_lsn()")).scalar()
                s0, t0 = server_cpu(), time.process_time()
                params = []
                for name, l in latest.items():  # P: the figures of each machine, as the fleet row has them
                    summary = l.summary
                    params.append({"machine_id": name, "replica": "cp-p", "ts": l.ts,
                                   "last_heartbeat": reg.machine(name).last_heartbeat,
                                   **{f: getattr(summary, f) for f in FIGURES}})
                writer.execute(upsert, params)
                writer.commit()
                rows = reader.execute(poll, {"since": since}).all()  # A
                reader.commit()
                since = max(row.ts for row in rows)
                elapsed = time.process_time() - t0
                time.sleep(0.05)  # let the backends' CPU counters settle
                s1 = server_cpu()
                lsn1 = writer.execute(sa.text("SELECT pg_current_wal_insert_lsn()")).scalar()
                wal_bytes = writer.execute(sa.text("SELECT pg_wal_lsn_diff(:b, :a)"), {"a": lsn0, "b": lsn1}).scalar()
                writer.commit()
                assert len(rows) == n
                if r >= 2:
                    cpu.append(elapsed)
                    server.append(s1 - s0)
                    wal.append(float(wal_bytes))
            read_bytes = reader.execute(sa.text("SELECT sum(pg_column_size(t.*)) FROM latest_values t")).scalar()
            dead = reader.execute(sa.text("SELECT n_dead_tup FROM pg_stat_user_tables "
                                          "WHERE relname = 'latest_values'")).scalar()
    finally:
        engine.dispose()
        pg.stop()
    c, s, w = statistics.median(cpu), statistics.median(server), statistics.median(wal)
    return {"client_cpu_s_per_round": c, "server_cpu_s_per_round": s, "wal_bytes_per_round": w,
            "read_bytes_per_round": float(read_bytes),
            "cpu_us_per_update": (c + s) / n * 1e6, "client_cpu_us_per_update": c / n * 1e6,
            "server_cpu_us_per_update": s / n * 1e6, "wal_bytes_per_update": w / n,
            "read_bytes_per_update": float(read_bytes) / n, "dead_tuples_after": dead}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    result = {"machines": args.machines, "rounds": args.rounds,
              "peering": asyncio.run(peering(args.machines, args.rounds)),
              "store": store(args.machines, args.rounds)}
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
