"""Part 3 of ``bench/storage.py``: at 1,000 machines in the store, ``metrics NAME --since
1h`` and ``--since 24h`` as the control plane answers them (old layout beside chunks, rows
beside columns), and a retention pass, old vs new."""

from __future__ import annotations

import statistics
import time

import msgspec
import numpy as np
import sqlalchemy as sa

from centrality_core.documents import MetricColumns, metric_rows
from centrality_core.summary import select
from centrality_core.timefmt import iso
from control_plane import history
from control_plane.store import Store
from control_plane.store.chunks import Chunks
from control_plane.store.db import WriteBatch

from .storage_disk import as_before, write_json_minutes
from .storage_format import DEFAULT_WINDOW, Machine


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
    store.write(b)
    write_json_minutes(store, [{"machine_id": old_mid, "minute": x["minute"] - 3600 * h, "stats": x["stats"]}
                               for h in range(24) for x in sources[gpu].minutes])
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
