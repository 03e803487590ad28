"""Metric history: the old layout (raw batch frames + JSON minutes) beside chunks, in one run.

1. **Format**: bytes per value of tier 0 and bytes per key-minute of the
   minute tier, for the simulated fleet (``cpu``, ``gpu8``, ``mixed`` = 3 cpu
   for 1 gpu8) and, with ``--real FILE`` (``bench/capture_real.py``), this
   machine's real agent; zstd levels beside lz4.
2. **On disk** (SQLite and Postgres): a fleet of ``--machines`` written in the
   old layout (batches staged as the agent's JSON frame), measured on disk,
   then compacted and measured again; the same fleet staged as the control
   plane stages it now (``store/staged.py``) and compacted; CPU per stored
   batch of each write, each compaction and retention.
3. **At 1,000 machines**: ``metrics NAME --since 1h`` (a gpu8 machine, raw)
   and ``--since 24h`` (minutes), as the control plane runs them, old layout
   beside chunks; a retention pass, rows touched and time, old vs new.

    python -m bench.storage --real /tmp/real.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import sqlalchemy as sa

from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.sampler import columnar
from centrality_core import protocol as p
from centrality_core.documents import MetricColumns, metric_rows
from centrality_core.runtime import tune_malloc
from centrality_core.settings import ServerSettings
from centrality_core.summary import select
from centrality_core.timefmt import iso
from control_plane import history
from control_plane.rollups import Rollups
from control_plane.store import Store, staged, tsz
from control_plane.store.chunks import Chunks
from control_plane.store.db import WriteBatch

from . import report

CODECS = [("zstd", 1), ("zstd", 3), ("zstd", 9), ("lz4", 0), ("lz4", 9)]
#: The default chunk length (``chunk_seconds``), measured beside 10 minutes and an hour.
DEFAULT_WINDOW = ServerSettings().chunk_seconds
WINDOWS = sorted({600.0, DEFAULT_WINDOW, 3600.0})


class Machine:
    """One machine's history as the control plane receives it: batch frames and closed minutes."""

    def __init__(self, name: str, profile: str) -> None:
        self.name, self.profile = name, profile
        self.frames: list[tuple[float, float, bytes]] = []
        self.staged: list[tuple[float, float, bytes]] = []  # the same batches, staged as the ingest does
        self.minutes: list[dict] = []
        self.values = 0
        self.key_minutes = 0

    def add(self, seq: int, ts: list[float], rows: list[dict], rollups: Rollups) -> None:
        batch = columnar("bench", seq, ts, rows, packed=True)
        self.frames.append((min(ts), max(ts), p.encode(batch)))
        a = np.frombuffer(batch.values, "<f8").reshape(len(batch.keys), len(ts))
        self.staged.append((min(ts), max(ts), staged.encode(ts, batch.keys, batch.values or a, batch.text)))
        rollups.add(self.name, ts, batch.keys, a)
        self.values += int((~np.isnan(a)).sum())

    def close(self, rollups: Rollups) -> None:
        self.minutes = rollups.take_closed(1e12)
        self.key_minutes = sum(len(m["stats"]) for m in self.minutes)


def simulate(name: str, profile: str, index: int, start: float, seconds: int) -> Machine:
    f, m, r = FakeCollectors(profile, index), Machine(name, profile), Rollups()
    for seq, first in enumerate(range(0, seconds, 5), 1):
        ts = [start + first + i + 0.001 * ((index * 7 + first + i) % 5) for i in range(5)]  # a few ms of jitter
        m.add(seq, ts, [f.sample(t)[0] for t in ts], r)
    m.close(r)
    return m


def real(path: str, start: float) -> Machine:
    rows = msgspec.json.decode(Path(path).read_bytes())
    m, r = Machine("real", "real"), Rollups()
    shift = start - rows[0][0]
    for seq, i in enumerate(range(0, len(rows) - 4, 5), 1):
        chunk = rows[i:i + 5]
        m.add(seq, [t + shift for t, _ in chunk], [v for _, v in chunk], r)
    m.close(r)
    return m


# ------------------------------------------------------------------ 1. format

def chunk_bytes(m: Machine, window: float, codec: str, level: int) -> tuple[int, float]:
    """Tier-0 bytes of ``m`` in chunks of ``window`` seconds, and the encode time."""
    groups: dict[float, list[bytes]] = {}
    for first, _, frame in m.frames:
        groups.setdefault(first - first % window, []).append(frame)
    total, spent = 0, 0.0
    for frames in groups.values():
        t = time.process_time()
        blob = history.batches_chunk(frames, codec=codec, level=level)[0]
        spent += time.process_time() - t
        total += len(blob)
    return total, spent


def minute_bytes(m: Machine) -> int:
    hours: dict[float, list] = {}
    for row in m.minutes:
        hours.setdefault(row["minute"] - row["minute"] % 3600, []).append((row["minute"], row["stats"]))
    return sum(len(history.stats_chunk(points)[0]) for points in hours.values())


def formats(groups: dict[str, list[Machine]]) -> list[dict]:
    out = []
    for name, machines in groups.items():
        values = sum(m.values for m in machines)
        batches = sum(len(m.frames) for m in machines)
        km = sum(m.key_minutes for m in machines)
        r = {"fleet": name, "machines": len(machines), "values": values,
             "seconds": len(machines[0].frames) * 5,
             "old_raw_bpv": round(sum(len(f) for m in machines for _, _, f in m.frames) / values, 2),
             "old_minute_bpkm": round(sum(len(msgspec.json.encode(x["stats"])) for m in machines
                                          for x in m.minutes) / km, 1),
             "new_minute_bpkm": round(sum(minute_bytes(m) for m in machines) / km, 2), "codecs": {}}
        for window in WINDOWS:
            for codec, level in (CODECS if window == DEFAULT_WINDOW else [("zstd", 3)]):
                nbytes, spent = zip(*(chunk_bytes(m, window, codec, level) for m in machines))
                r["codecs"][f"{codec}-{level}/{window:.0f}s"] = {
                    "bpv": round(sum(nbytes) / values, 3), "encode_us_per_batch": round(sum(spent) / batches * 1e6, 1)}
        out.append(r)
    return out


# ------------------------------------------------------------------ 2. on disk

def table_bytes(store: Store) -> dict[str, int]:
    """Bytes on disk per metric table (tables, indexes, TOAST; Postgres partitions by tier)."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relkind = 'r' AND starts_with(c.relname, 'metric_')").all()
            out: dict[str, int] = {}
            for name, size in rows:
                key = name if not name.startswith("metric_chunks_t") else f"metric_chunks tier {name[15]}"
                out[key] = out.get(key, 0) + size
            return out
        rows = conn.exec_driver_sql(
            "SELECT coalesce(i.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_schema i ON i.name = d.name AND i.type = 'index' "
            "WHERE coalesce(i.tbl_name, d.name) LIKE 'metric_%' GROUP BY 1").all()
        return dict(rows)


def write_old(store: Store, machines: list[Machine], ids: dict[str, str], form: str = "frames") -> float:
    """Write every batch (``form``: ``frames``, the agent's JSON frames as the old layout
    staged them, or ``staged``, as the control plane stages them now) and minute as the
    store writer does (1,000 batches per flush); returns the CPU time spent on batches."""
    rows = sorted((first, ids[m.name], last, frame) for m in machines for first, last, frame in getattr(m, form))
    spent = 0.0
    for i in range(0, len(rows), 1000):
        b = WriteBatch()
        b.metric_batches = [{"machine_id": mid, "ts_first": first, "ts_last": last, "payload": frame}
                            for first, mid, last, frame in rows[i:i + 1000]]
        t = time.process_time()
        store.write(b)
        spent += time.process_time() - t
    b = WriteBatch()
    b.rollups = [{**x, "machine_id": ids[m.name]} for m in machines for x in m.minutes]
    store.write(b)
    return spent


def compact(chunks: Chunks, now: float) -> float:
    """Compact every raw batch and minute; returns the CPU time spent."""
    t = time.process_time()
    while chunks.compact_raw(now, window=DEFAULT_WINDOW)["chunks"]:
        pass
    while chunks.compact_minutes(now)["chunks"]:
        pass
    return time.process_time() - t


def on_staged(url: str, machines: list[Machine], now: float) -> dict:
    """The fleet staged as the control plane stages it now: the write (staging the batch
    included), the staged rows on disk, the compaction."""
    store = Store(url)
    store.migrate()
    ids = {m.name: f"{i:032x}" for i, m in enumerate(machines)}
    batches = sum(len(m.frames) for m in machines)
    values = sum(m.values for m in machines)
    arrived = [history.decode_batch(frame) for m in machines for _, _, frame in m.frames]
    t = time.process_time()  # what the ingest adds: putting each batch in its staged form
    for b in arrived:
        staged.encode(b.ts, b.keys, b.values, b.text)
    write_cpu = time.process_time() - t + write_old(store, machines, ids, "staged")
    staged_bytes = table_bytes(store).get("metric_batches", 0)
    cpu = compact(Chunks(store), now)
    store.close()
    return {"staged_write_us_per_batch": round(write_cpu / batches * 1e6, 1),
            "staged_raw_bpv_disk": round(staged_bytes / values, 2),
            "staged_compact_us_per_batch": round(cpu / batches * 1e6, 1)}


def as_before(store: Store) -> Store:
    """``store`` as the old layout ran: SQLite zeroing every freed page (Debian's build
    default, before the store set ``secure_delete=FAST``)."""
    if store.dialect == "sqlite":
        sa.event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA secure_delete=ON"))
    return store


def on_disk(backend: str, url: str, machines: list[Machine], now: float) -> dict:
    store = as_before(Store(url))
    store.migrate()
    ids = {m.name: f"{i:032x}" for i, m in enumerate(machines)}
    write_cpu = write_old(store, machines, ids)
    values = sum(m.values for m in machines)
    km = sum(m.key_minutes for m in machines)
    batches = sum(len(m.frames) for m in machines)
    old = table_bytes(store)
    chunks = Chunks(store)
    compact_cpu = compact(chunks, now)
    if backend == "sqlite":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")
    new = table_bytes(store)
    usage = chunks.usage()["tiers"]
    tier0 = new.get("metric_chunks tier 0") or None
    res = {
        "backend": backend, "machines": len(machines), "values": values, "batches": batches,
        "old_disk": old, "new_disk": new,
        "old_raw_bpv_disk": round(old.get("metric_batches", 0) / values, 2),
        "old_minute_bpkm_disk": round(old.get("metric_rollups", 0) / km, 1),
        "new_raw_bpv_payload": round(usage["raw"]["bytes"] / values, 3),
        "new_minute_bpkm_payload": round(usage["1m"]["bytes"] / km, 2),
        "write_us_per_batch": round(write_cpu / batches * 1e6, 1),
        "compact_us_per_batch": round(compact_cpu / batches * 1e6, 1),
    }
    if tier0:  # Postgres: each tier's partitions measured apart
        res["new_raw_bpv_disk"] = round(tier0 / values, 3)
        res["new_minute_bpkm_disk"] = round(new.get("metric_chunks tier 1", 0) / km, 2)
    else:  # SQLite: one table for every tier; shares by payload bytes
        total = new.get("metric_chunks", 0)
        share = usage["raw"]["bytes"] / (usage["raw"]["bytes"] + usage["1m"]["bytes"])
        res["new_raw_bpv_disk"] = round(total * share / values, 3)
        res["new_minute_bpkm_disk"] = round(total * (1 - share) / km, 2)
    store.close()
    return res


# ------------------------------------------------------------------ 3. at 1,000 machines

def old_query_raw(store: Store, mid: str, since: float, until: float) -> list[dict]:
    """What ``metrics NAME`` did before chunks (control_plane/metrics.py, 2026-11)."""
    out = []
    for payload in store.metric_batches(mid, since, until):
        b = history.decode_batch(payload)
        wanted = set(select(b.keys, None))
        cols = [(k, c) for k, c in zip(b.keys, b.column_lists()) if k in wanted]
        for i, t in enumerate(b.ts):
            if since <= t <= until:
                row = {"ts": iso(t)}
                row.update((k, c[i]) for k, c in cols if c[i] is not None)
                out.append(row)
    out.sort(key=lambda r: r["ts"])
    return out


def old_query_minutes(store: Store, mid: str, since: float, until: float) -> list[dict]:
    out = []
    for minute, payload in store.metric_rollups(mid, since, until):
        stats = msgspec.json.decode(payload)
        row = {"ts": iso(minute)}
        for key in select(stats, None):
            mn, mx, total, n = stats[key]
            row[key], row[f"{key}:min"], row[f"{key}:max"] = total / n, mn, mx
        out.append(row)
    return out


#: What reads are timed with: this process's CPU time (``--clock cpu``, the default: on a
#: shared box the wall clock mostly measures the other processes; SQLite's work is in this
#: process, Postgres does its small share of a read in its own) or the wall clock.
CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time


def timed(fn, *args, runs: int = 5) -> tuple[float, int, float]:
    """Median milliseconds (``clock``) of the query with the JSON encoding of its answer
    (what the control plane does before the answer leaves), the rows it answered, and
    the median of the query alone. The answer of one run is freed before the next
    starts (in the control plane that happens after the answer is sent)."""
    times, alone, n = [], [], 0
    for _ in range(runs):
        t = clock()
        rows = fn(*args)
        alone.append(clock() - t)
        msgspec.json.encode(rows)
        times.append(clock() - t)
        n = len(rows.ts) if isinstance(rows, MetricColumns) else len(rows)
        del rows
    return round(statistics.median(times) * 1e3, 1), n, round(statistics.median(alone) * 1e3, 1)


def client_ms(answer: bytes, columns: bool, runs: int = 5) -> float:
    """Median milliseconds the operator client takes to make rows of an answer: the JSON
    rows decoded (before), or the columns decoded and made into the same rows."""
    times = []
    for _ in range(runs):
        t = clock()
        rows = (metric_rows(msgspec.json.decode(answer, type=MetricColumns)) if columns
                else msgspec.json.decode(answer))
        times.append(clock() - t)
        del rows
    return round(statistics.median(times) * 1e3, 1)


def fleet(backend: str, url: str, sources: list[Machine], now: float, count: int) -> dict:
    """``count`` machines of chunks (1 h of tier 0, 24 h of tier 1: sources' chunks, reused),
    and the gpu8 machine's hour and day in the old layout beside them."""
    store = Store(url)
    store.migrate()
    chunks = Chunks(store)
    t0 = [[] for _ in sources]  # per source: (first, last, nvalues, blob)
    t1 = [[] for _ in sources]
    for s, m in enumerate(sources):
        groups: dict[float, list] = {}
        for first, _, frame in m.frames:
            groups.setdefault(first - first % DEFAULT_WINDOW, []).append(frame)
        for frames in groups.values():
            blob, first, last, held = history.batches_chunk(frames)
            t0[s].append((first, last, held, blob))
        points = [(x["minute"], x["stats"]) for x in m.minutes]
        for h in range(24):  # the hour simulated, shifted back hour by hour
            shifted = [(t - 3600 * h, st) for t, st in points]
            blob, held = history.stats_chunk(shifted)
            t1[s].append((shifted[0][0], shifted[-1][0], held, blob))
    table = sa.table("metric_chunks", *(sa.column(c) for c in ("tier", "machine_id", "ts_first", "ts_last",
                                                                "nvalues", "nbytes", "payload")))
    with store.engine.begin() as conn:
        for i in range(count):
            s = i % len(sources)
            rows = [{"tier": tier, "machine_id": f"{i:032x}", "ts_first": a, "ts_last": b, "nvalues": n,
                     "nbytes": len(blob), "payload": blob}
                    for tier, group in ((0, t0[s]), (1, t1[s])) for a, b, n, blob in group]
            if chunks.postgres:
                for r in rows:
                    chunks._ensure_partition(conn, r["tier"], r["ts_last"])
            conn.execute(table.insert(), rows)
    gpu = next(i for i, m in enumerate(sources) if m.profile == "gpu8")
    mid = f"{gpu:032x}"
    old_mid = "old" + mid[3:]
    b = WriteBatch()  # the same machine's hour and day in the old layout
    b.metric_batches = [{"machine_id": old_mid, "ts_first": a, "ts_last": z, "payload": f}
                        for a, z, f in sources[gpu].frames]
    b.rollups = [{"machine_id": old_mid, "minute": x["minute"] - 3600 * h, "stats": x["stats"]}
                 for h in range(24) for x in sources[gpu].minutes]
    store.write(b)
    res = {"backend": backend, "machines": count}
    res["new_1h_raw_ms"], res["rows_1h"], res["new_1h_raw_query_ms"] = timed(
        history.query, store, chunks, mid, now - 3600, now, None, "raw")
    res["old_1h_raw_ms"], n_old, res["old_1h_raw_query_ms"] = timed(old_query_raw, store, old_mid, now - 3600, now)
    res["new_24h_1m_ms"], res["rows_24h"], res["new_24h_1m_query_ms"] = timed(
        history.query, store, chunks, mid, now - 86400, now, None, "1m")
    res["old_24h_1m_ms"], _, res["old_24h_1m_query_ms"] = timed(old_query_minutes, store, old_mid, now - 86400, now)
    for span, tier, name in ((3600, "raw", "1h_raw"), (86400, "1m", "24h_1m")):
        # What the CLI and the dashboard ask now: columns (metrics --columns), made into rows by the client.
        res[f"cols_{name}_ms"], n, res[f"cols_{name}_query_ms"] = timed(
            history.query_columns, store, chunks, mid, now - span, now, None, tier)
        rows = history.query(store, chunks, mid, now - span, now, None, tier)
        cols = msgspec.json.encode(history.query_columns(store, chunks, mid, now - span, now, None, tier))
        answer = msgspec.json.encode(rows)
        assert n == len(rows) and msgspec.json.encode(metric_rows(msgspec.json.decode(cols, type=MetricColumns))) \
            == answer
        res[f"rows_{name}_bytes"], res[f"cols_{name}_bytes"] = len(answer), len(cols)
        res[f"rows_{name}_client_ms"] = client_ms(answer, False)
        res[f"cols_{name}_client_ms"] = client_ms(cols, True)
        del rows, answer, cols
    res["new_1h_raw_gpu_ms"], _, _ = timed(history.query, store, chunks, mid, now - 3600, now, ["gpu"], "raw")
    res["new_24h_1m_gpu_ms"], _, _ = timed(history.query, store, chunks, mid, now - 86400, now, ["gpu"], "1m")
    res["values_1h"] = sum(len(r) - 1 for r in history.as_dicts(
        history.query(store, chunks, mid, now - 3600, now, None, "raw")))
    assert n_old == res["rows_1h"], (n_old, res["rows_1h"])
    store.close()
    return res


def retention(backend: str, url: str, count: int, frame_bytes: int, minute_bytes_: int, chunk_bytes_: int,
              now: float) -> dict:
    """A retention pass at ``count`` machines: old (a minute of raw batches and minutes,
    every minute) vs new (a window of tier-0 chunks, every 10 minutes; Postgres: a day's
    partition)."""
    rng = np.random.default_rng(0)
    store = as_before(Store(url))
    store.migrate()
    frame = rng.bytes(frame_bytes)
    b = WriteBatch()
    for i in range(count):
        mid = f"{i:032x}"
        b.metric_batches += [{"machine_id": mid, "ts_first": now - 120 + 5 * k, "ts_last": now - 116 + 5 * k,
                              "payload": frame} for k in range(24)]
        b.rollups += [{"machine_id": mid, "minute": now - 120 + 60 * k, "stats": {"x": [1, 1, 1, 1]}} for k in range(2)]
    store.write(b)
    with store.engine.begin() as conn:  # minutes of realistic size
        conn.exec_driver_sql(store._sql("UPDATE metric_rollups SET payload = ?"), (rng.bytes(minute_bytes_),))
    t, c = time.perf_counter(), time.process_time()
    old = store.apply_retention(now, raw=60, rollups=60, events=1e9)
    res = {"backend": backend, "machines": count, "old_ms": round((time.perf_counter() - t) * 1e3, 1),
           "old_cpu_ms": round((time.process_time() - c) * 1e3, 1),
           "old_rows": old["metric_batches"] + old["metric_rollups"], "old_batches": old["metric_batches"]}
    store.close()
    store = Store(url)  # the new layout, as the store runs now
    chunks = Chunks(store)
    table = sa.table("metric_chunks", *(sa.column(c) for c in ("tier", "machine_id", "ts_first", "ts_last",
                                                                "nvalues", "nbytes", "payload")))
    # SQLite deletes, every pass, the chunks that passed the retention: one 10-minute window
    # of every machine at most. Postgres drops a whole day: 144 windows of every machine
    # (small payloads here: dropping a partition does not read them).
    blob = rng.bytes(chunk_bytes_)
    day = now - now % 86400
    per_day = int(86400 // DEFAULT_WINDOW)
    windows = [day - 86400 + DEFAULT_WINDOW * (k + 1) - 1 for k in range(per_day if chunks.postgres else 1)]
    old_blob = rng.bytes(256) if chunks.postgres else blob
    with store.engine.begin() as conn:
        if chunks.postgres:
            chunks._ensure_partition(conn, 0, day - 1)
            chunks._ensure_partition(conn, 0, day + 1)
        for i in range(count):
            rows = [{"tier": 0, "machine_id": f"{i:032x}", "ts_first": ts - DEFAULT_WINDOW + 1, "ts_last": ts,
                     "nvalues": 1,
                     "nbytes": len(old_blob), "payload": old_blob} for ts in windows]
            rows.append({"tier": 0, "machine_id": f"{i:032x}", "ts_first": day + 1, "ts_last": day + DEFAULT_WINDOW - 1,
                         "nvalues": 1, "nbytes": len(blob), "payload": blob})
            conn.execute(table.insert(), rows)
    t, c = time.perf_counter(), time.process_time()
    new = chunks.apply_retention(day + 1, {0: 1})  # the window (SQLite) / the day (Postgres) before
    res.update(new_ms=round((time.perf_counter() - t) * 1e3, 1), new_cpu_ms=round((time.process_time() - c) * 1e3, 1),
               new_chunks=new["chunks"], new_partitions=new["partitions"],
               new_batches=count * len(windows) * int(DEFAULT_WINDOW // 5))  # what those chunks replaced
    store.close()
    return res


# ------------------------------------------------------------------ run

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--machines", type=int, default=40, help="simulated machines (mixed: 1 in 4 is gpu8)")
    ap.add_argument("--seconds", type=int, default=3600, help="history simulated per machine (1 Hz)")
    ap.add_argument("--fleet", type=int, default=1000, help="machines in the store for the query/retention part")
    ap.add_argument("--real", help="rows captured by bench/capture_real.py (this machine's real agent)")
    ap.add_argument("--clock", choices=list(CLOCK), default="cpu",
                    help="time reads in this process's CPU time (default) or by the wall clock")
    args = ap.parse_args()
    global clock
    clock = CLOCK[args.clock]
    tune_malloc()  # as `centrality server` runs (centrality_core/runtime.py), for the old layout too
    backends = args.backend or ["sqlite", "postgres"]
    now = time.time()
    start = now - args.seconds - (now - args.seconds) % 3600 - 3600  # whole hours: whole chunks
    t = time.perf_counter()
    machines = [simulate(f"m{i:04d}", "gpu8" if i % 4 == 3 else "cpu", i, start, args.seconds)
                for i in range(args.machines)]
    print(f"simulated {args.machines} machines x {args.seconds} s in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    groups = {"cpu": [m for m in machines if m.profile == "cpu"][:3],
              "gpu8": [m for m in machines if m.profile == "gpu8"][:1], "mixed (3 cpu : 1 gpu8)": machines}
    if args.real:
        groups["real agent (this machine)"] = [real(args.real, start)]
    fmt = formats(groups)
    disk, fleets, rets = [], [], []
    frame_avg = int(np.mean([len(f) for m in machines for _, _, f in m.frames]))
    minute_avg = int(np.mean([len(msgspec.json.encode(x["stats"])) for m in machines for x in m.minutes]))
    chunk_avg = int(np.mean([chunk_bytes(m, DEFAULT_WINDOW, "zstd", 3)[0] / max(1, len(m.frames) // int(DEFAULT_WINDOW // 5))
                             for m in machines]))
    with contextlib.ExitStack() as stack:  # the SQLite files and the Postgres cluster go, failed or not
        for backend in backends:
            if backend == "postgres":
                sys.path.insert(0, str(report.ROOT))
                from tests.fixtures.postgres import start_postgres

                pg = start_postgres()
                stack.callback(pg.stop)
                urls = _pg_databases(pg, 4)
            else:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="centrality-bench-storage-", ignore_cleanup_errors=True))
                urls = [f"sqlite:///{scratch}/{n}.db" for n in ("disk", "fleet", "retention", "staged")]
            disk.append(on_disk(backend, urls[0], machines, now + 3600))
            disk[-1].update(on_staged(urls[3], machines, now + 3600))
            print(disk[-1], file=sys.stderr)
            fleets.append(fleet(backend, urls[1], machines, start + args.seconds, args.fleet))
            print(fleets[-1], file=sys.stderr)
            rets.append(retention(backend, urls[2], args.fleet, frame_avg, minute_avg, chunk_avg, now))
            print(rets[-1], file=sys.stderr)
    command = "python -m bench.storage " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("storage", command.strip(), {"clock": args.clock, "formats": fmt, "disk": disk, "fleet": fleets,
                                              "retention": rets},
                 markdown(fmt, disk, fleets, rets, args))


def _pg_databases(pg, n: int) -> list[str]:
    import psycopg

    from tests.fixtures.postgres import libpq_url

    urls = []
    with psycopg.connect(libpq_url(pg.url()), autocommit=True) as conn:
        for i in range(n):
            conn.execute(f"CREATE DATABASE bench_storage_{i}")
            urls.append(pg.url(f"bench_storage_{i}"))
    return urls


def markdown(fmt, disk, fleets, rets, args) -> str:
    w, dw = f"{DEFAULT_WINDOW:.0f}s", f"{DEFAULT_WINDOW / 60:.0f} min"
    lines = ["## Metric history on disk (`bench/storage.py`)", "",
             f"{args.machines} simulated machines (1 in 4 an 8-GPU node), {args.seconds} s each at 1 Hz, "
             "batches of 5 samples as agents send them; the old layout (raw batch frames, JSON minutes) "
             "measured beside chunks in the same run.", "",
             f"**Format** (payload bytes; tier 0 in chunks of 10 minutes, {DEFAULT_WINDOW / 60:.0f} minutes "
             "(the default `chunk_seconds`) and an hour):", "",
             f"| fleet | values | old raw B/value | zstd-3 / 10 min | **zstd-3 / {dw}** | zstd-3 / 1 h | "
             f"zstd-1 / {dw} | zstd-9 / {dw} | lz4-0 / {dw} | lz4-9 / {dw} | old minute B/key-minute "
             "| new minute B/key-minute |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in fmt:
        c = r["codecs"]
        lines.append(f"| {r['fleet']} | {r['values']:,} | {r['old_raw_bpv']} | {c['zstd-3/600s']['bpv']} | "
                     f"**{c[f'zstd-3/{w}']['bpv']}** | {c['zstd-3/3600s']['bpv']} | {c[f'zstd-1/{w}']['bpv']} | "
                     f"{c[f'zstd-9/{w}']['bpv']} | {c[f'lz4-0/{w}']['bpv']} | {c[f'lz4-9/{w}']['bpv']} | "
                     f"{r['old_minute_bpkm']} | {r['new_minute_bpkm']} |")
    mixed = next(r for r in fmt if r["fleet"].startswith("mixed"))["codecs"]
    lines += ["", f"Encode CPU per stored batch (mixed, {dw} chunks): " + ", ".join(
        f"{k.split('/')[0]} {v['encode_us_per_batch']} µs" for k, v in mixed.items() if k.endswith(f"/{w}")), "",
        "**On disk** (tables with their indexes; SQLite after VACUUM, chunk table shared by tiers in "
        "proportion to their payloads):", "",
        "| store | old raw B/value | new tier 0 B/value | old minute B/key-minute | new minute B/key-minute "
        "| JSON frame write µs/batch | JSON staged compaction µs/batch |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for d in disk:
        lines.append(f"| {d['backend']} | {d['old_raw_bpv_disk']} | {d['new_raw_bpv_disk']} | "
                     f"{d['old_minute_bpkm_disk']} | {d['new_minute_bpkm_disk']} | {d['write_us_per_batch']} | "
                     f"{d['compact_us_per_batch']} |")
    lines += ["", f"**Reads at {args.fleet:,} machines** (in the control plane: the query and the JSON "
              "encoding of its answer (query alone in brackets), median of 5 "
              f"({'CPU time of this process' if args.clock == 'cpu' else 'wall clock'}); a gpu8 machine, "
              "every key). "
              "Old layout: rows from JSON batches and minutes. Rows: chunks, answered as rows (what `metrics` "
              "answers a plain SSH client). Columns: chunks, answered as columns (`metrics --columns`, what the "
              "CLI and the dashboard ask):", "",
              "| store | `--since 1h` raw: old | rows | **columns** | `--stream gpu` (rows) "
              "| `--since 24h` minutes: old | rows | **columns** | `--stream gpu` (rows) | rows 1h / 24h |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fleets:
        lines.append(f"| {f['backend']} | {f['old_1h_raw_ms']} ms ({f['old_1h_raw_query_ms']}) | "
                     f"{f['new_1h_raw_ms']} ms ({f['new_1h_raw_query_ms']}) | "
                     f"**{f['cols_1h_raw_ms']} ms** ({f['cols_1h_raw_query_ms']}) | {f['new_1h_raw_gpu_ms']} ms | "
                     f"{f['old_24h_1m_ms']} ms ({f['old_24h_1m_query_ms']}) | "
                     f"{f['new_24h_1m_ms']} ms ({f['new_24h_1m_query_ms']}) | "
                     f"**{f['cols_24h_1m_ms']} ms** ({f['cols_24h_1m_query_ms']}) | {f['new_24h_1m_gpu_ms']} ms | "
                     f"{f['rows_1h']:,} / {f['rows_24h']:,} |")
    lines += ["", "The answer and the client's work to make rows of it (this process, same clock, median of 5: the JSON rows "
              "decoded, or the columns decoded and made into the same dicts, checked equal):", "",
              "| store | 1h: rows answer | columns answer | client, rows | client, columns "
              "| 24h: rows answer | columns answer | client, rows | client, columns |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    for f in fleets:
        lines.append(f"| {f['backend']} | {mb(f['rows_1h_raw_bytes'])} | {mb(f['cols_1h_raw_bytes'])} | "
                     f"{f['rows_1h_raw_client_ms']} ms | {f['cols_1h_raw_client_ms']} ms | "
                     f"{mb(f['rows_24h_1m_bytes'])} | {mb(f['cols_24h_1m_bytes'])} | "
                     f"{f['rows_24h_1m_client_ms']} ms | {f['cols_24h_1m_client_ms']} ms |")
    lines += ["", f"**Retention pass at {args.fleet:,} machines**:", "",
              "| store | old: rows deleted per pass | time | new: chunks deleted | partitions dropped | time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rets:
        lines.append(f"| {r['backend']} | {r['old_rows']:,} | {r['old_ms']} ms | {r['new_chunks']:,} | "
                     f"{r['new_partitions']} | {r['new_ms']} ms |")
    lines += ["", "**Control-plane CPU per stored batch** (this process; SQLite runs in it, Postgres "
              "does its share in its own processes): writing the batch as it arrives, then getting rid of it. "
              "Old layout: the agent's JSON frame stored as received, later the retention delete of its row. "
              "JSON staged: the same write, then compaction into a chunk (decode, encode, insert, delete) and "
              "later the retention of the chunk (what rows staged before an upgrade still cost). Staged: the "
              "batch put in its staged form (`store/staged.py`) and written, compaction, retention of the chunk:",
              "",
              "| store | old: write | old: retention | **old total** | JSON staged: compaction | JSON staged total "
              "| staged: stage + write | staged: compaction | chunk retention | **staged total** |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d, r in zip(disk, rets):
        old_ret = r["old_cpu_ms"] * 1e3 / r["old_batches"]
        new_ret = r["new_cpu_ms"] * 1e3 / r["new_batches"]
        w, comp = d["write_us_per_batch"], d["compact_us_per_batch"]
        sw, sc = d["staged_write_us_per_batch"], d["staged_compact_us_per_batch"]
        lines.append(f"| {d['backend']} | {w} µs | {old_ret:.1f} µs | **{w + old_ret:.1f} µs** | {comp} µs | "
                     f"{w + comp + new_ret:.1f} µs | {sw} µs | {sc} µs | {new_ret:.2f} µs | "
                     f"**{sw + sc + new_ret:.1f} µs** |")
    lines += ["", "Staged rows on disk (waiting for compaction, up to `chunk_seconds` plus a minute): " + ", ".join(
        f"{d['backend']} {d['staged_raw_bpv_disk']} B/value (JSON frames: {d['old_raw_bpv_disk']})" for d in disk)]
    lines += ["", *disk_cost(fmt, disk, args)]
    return "\n".join(lines)


#: Default retention of each tier, days (centrality_core/settings.py).
DEFAULT_DAYS = {"raw": 2, "1m": 30, "1h": 730}


def disk_cost(fmt: list[dict], disk: list[dict], args) -> list[str]:
    """Disk at the default retentions for 100 / 1,000 / 10,000 machines, from the
    figures measured above (SQLite on-disk overhead applied to payload sizes)."""
    sq = next((d for d in disk if d["backend"] == "sqlite"), disk[0])
    over_raw = sq["new_raw_bpv_disk"] / max(sq["new_raw_bpv_payload"], 1e-9)
    over_min = sq["new_minute_bpkm_disk"] / max(sq["new_minute_bpkm_payload"], 1e-9)
    lines = ["**Disk at the default retentions** (raw 2 days, minutes 30 days, hours 2 years; hours "
             "estimated at the minute tier's bytes per key-point):", "",
             "| fleet | keys/machine | raw | minutes | hours | per machine | 100 machines | 1,000 | 10,000 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in fmt:
        if r["fleet"] in ("cpu", "gpu8"):
            continue
        keys = r["values"] / (r["machines"] * r["seconds"])
        raw = r["codecs"][f"zstd-3/{DEFAULT_WINDOW:.0f}s"]["bpv"] * over_raw * keys * 86400 * DEFAULT_DAYS["raw"]
        minutes = r["new_minute_bpkm"] * over_min * keys * 1440 * DEFAULT_DAYS["1m"]
        hours = r["new_minute_bpkm"] * over_min * keys * 24 * DEFAULT_DAYS["1h"]
        one = raw + minutes + hours
        gb = lambda b: f"{b / 1e9:,.1f} GB" if b >= 1e9 else f"{b / 1e6:,.0f} MB"  # noqa: E731
        lines.append(f"| {r['fleet']} | {keys:.0f} | {gb(raw)} | {gb(minutes)} | {gb(hours)} | {gb(one)} | "
                     f"{gb(100 * one)} | {gb(1000 * one)} | {gb(10000 * one)} |")
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
