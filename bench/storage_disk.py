"""Part 2 of ``bench/storage.py``: a fleet written in the old layout and compacted, and
staged as the control plane stages it now; bytes on disk and CPU per stored batch."""

from __future__ import annotations

import time

import msgspec
import sqlalchemy as sa

from control_plane import history
from control_plane.store import Store, staged
from control_plane.store.chunks import Chunks
from control_plane.store.db import WriteBatch
from control_plane.store.models import MetricRollupRow

from .storage_format import DEFAULT_WINDOW, Machine


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
        if form == "frames":
            write_as_before(store, b.metric_batches)
        else:
            store.write(b)
        spent += time.process_time() - t
    minutes = [{**x, "machine_id": ids[m.name]} for m in machines for x in m.minutes]
    if form == "frames":
        write_json_minutes(store, minutes)
    else:
        b = WriteBatch()
        b.rollups = minutes
        store.write(b)  # staged (staged.encode_minute)
    return spent


def write_as_before(store: Store, batches: list[dict]) -> None:
    """Batches written as the store wrote them before ``Store._append``: multi-row
    ``INSERT`` statements on both stores (on Postgres it now uses a binary ``COPY``)."""
    with store.engine.begin() as conn:
        store._insert_many(conn, "INSERT INTO metric_batches (machine_id, ts_first, ts_last, payload) VALUES {rows}",
                           4, [(r["machine_id"], r["ts_first"], r["ts_last"], r["payload"]) for r in batches])


def write_json_minutes(store: Store, minutes: list[dict]) -> None:
    """Minutes as the old layout stored them: ``{key: [min, max, sum, count]}`` JSON rows."""
    t = MetricRollupRow.__table__
    with store.engine.begin() as conn:
        conn.execute(t.insert(), [{"machine_id": x["machine_id"], "minute": x["minute"],
                                   "payload": msgspec.json.encode(staged.KeyStats.of(x["stats"]).as_dict())}
                                  for x in minutes])


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
