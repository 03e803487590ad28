"""Metric chunks in the store: compaction, reads, retention by chunk, the size bound.

Compaction turns what arrived (raw batches, JSON minutes) into compressed
chunks. Each call is **one transaction** per handful of machines: the chunks
are inserted and the rows they replace deleted together, so a crash (kill -9)
at any point leaves either the rows or the chunk, never both and never
neither, and running it again simply carries on (idempotent). Acks to agents
do not depend on it: a batch is acknowledged once its raw row is durable.
The cyclic garbage collector waits during a compaction (``history.paused_gc``):
decoded minutes are thousands of small lists, and the collections they trigger
walk the whole heap (in bench/storage.py they doubled the cost of compacting minutes).

* tier 0: raw batches of a closed ``window`` (30 min by default) -> one chunk per machine;
* tier 1: JSON minutes of a closed hour -> one chunk per machine and hour;
* tier 2: the tier-1 chunks of a closed UTC day -> one chunk of 24 hourly points
  per machine and day (a cursor in ``meta`` says which day and machine are done).

Retention: on Postgres ``metric_chunks`` is partitioned by ``(tier, ts_last)``
per UTC day and whole partitions older than a tier's retention are dropped;
on SQLite the chunks are deleted with one range delete per tier (a chunk row
holds ~30 minutes of ~200 keys, so that is thousands of times fewer rows
than values) and SQLite reuses the freed pages.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from ..history import batches_chunk, chunk_stats, coarsen, paused_gc, stats_chunk
from .db import Store, _translated, fetch_all
from .models import MetricBatchRow, MetricChunkRow, MetricRollupRow
from .staged import minute_stats

log = logging.getLogger("centrality.store")

DAY = 86400.0
HOUR = 3600.0
TIER_NAMES = {0: "raw", 1: "1m", 2: "1h"}
_PARTITION = re.compile(r"^metric_chunks_t(\d)_d(\d+)$")
_TIER2_CURSOR = "metric_tier2_cursor"  # "day:machine_id" of the last tier-2 chunk written
#: The size bound when none is set, on Postgres and for an in-memory SQLite (``default_bound``).
POSTGRES_BOUND = 100 * 10 ** 9
MEMORY_BOUND = 10 ** 9


class Chunks:
    """The chunk operations of one ``Store`` (called from the writer's thread)."""

    def __init__(self, store: Store, *, level: int = 3) -> None:
        self.store = store
        self.engine = store.engine
        self.postgres = store.dialect == "postgresql"
        self.level = level
        self._partitions: set[str] | None = None
        #: Called inside the transaction after each chunk is inserted (tests use it
        #: to kill the process at the worst moment).
        self.on_chunk: Callable[[int, str], None] | None = None

    # ------------------------------------------------------------------ writing chunks

    def _insert(self, conn, tier: int, rows: list[tuple[str, float, float, int, bytes]]) -> None:
        """Chunks ``(machine_id, ts_first, ts_last, nvalues, blob)`` of ``tier``, in one statement."""
        if not rows:
            return
        if self.postgres:
            for row in rows:
                self._ensure_partition(conn, tier, row[2])
        self.store._append(
            conn, "metric_chunks", ("tier", "machine_id", "ts_first", "ts_last", "nvalues", "nbytes", "payload"),
            ("int2", "varchar", "float8", "float8", "int4", "int4", "bytea"),
            [(tier, mid, first, last, n, len(blob), blob) for mid, first, last, n, blob in rows])
        if self.on_chunk is not None:
            for row in rows:
                self.on_chunk(tier, row[0])

    def _ensure_partition(self, conn, tier: int, ts: float) -> None:
        day = int(ts // DAY)
        name = f"metric_chunks_t{tier}_d{day}"
        if self._partitions is None:
            self._partitions = set(self._list_partitions(conn))
        if name in self._partitions:
            return
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF metric_chunks "
            f"FOR VALUES FROM ({tier}, {day * DAY!r}) TO ({tier}, {(day + 1) * DAY!r})")
        # Known only once committed: a rolled-back transaction takes the partition with it.
        conn.info.setdefault("new_partitions", set()).add(name)

    @_translated
    def prepare(self, now: float) -> None:
        """Postgres: create yesterday's, today's and tomorrow's partitions of every
        tier in a short transaction of their own, so that compaction rarely
        creates one (creating a partition locks the parent table until commit)."""
        if not self.postgres:
            return
        with self._transaction() as conn:
            for tier in TIER_NAMES:
                for day in (-1, 0, 1):
                    self._ensure_partition(conn, tier, now + day * DAY)

    def _list_partitions(self, conn) -> list[str]:
        return list(conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metric_chunks'").scalars())

    def _transaction(self):
        return _Tx(self)

    # ------------------------------------------------------------------ compaction

    @_translated
    def compact_raw(self, now: float, *, window: float = 1800.0, grace: float = 60.0,
                    max_machines: int = 64, after: str = "") -> dict:
        """Raw batches of closed windows into tier-0 chunks, for up to ``max_machines``
        machines (in id order, after ``after``), in one transaction. Returns counts
        ``machines`` done and ``last``, the last of them (None: nothing left after ``after``)."""
        cutoff = (now - grace) - (now - grace) % window
        t = MetricBatchRow.__table__
        done: dict = {"chunks": 0, "rows": 0, "values": 0}
        with paused_gc(), self._transaction() as conn:
            mids = _machines(conn, t, t.c.ts_last < cutoff, after, max_machines)
            done["last"] = mids[-1] if mids else None
            done["machines"] = len(mids)
            if not mids:
                return done
            # Taken out and read in one statement: what is compacted is exactly what is
            # deleted, even with another control plane compacting (Postgres replicas: its
            # delete waits for this transaction and then finds nothing), and a crash
            # before the commit puts every row back.
            taken = fetch_all(conn, t.delete().where(t.c.machine_id.in_(mids), t.c.ts_last < cutoff)
                              .returning(t.c.machine_id, t.c.ts_first, t.c.id, t.c.payload))
            groups: dict[tuple[str, float], list] = {}
            for mid, ts_first, rid, payload in sorted(taken, key=lambda r: (r[0], r[1], r[2])):
                groups.setdefault((mid, ts_first - ts_first % window), []).append(payload)
            made = []
            for (mid, _), payloads in groups.items():
                blob, first, last, held = batches_chunk(payloads, level=self.level)
                made.append((mid, first, last, held, blob))
                done["values"] += held
            self._insert(conn, 0, made)
            done["chunks"] += len(made)
            done["rows"] += len(taken)
        return done

    @_translated
    def compact_minutes(self, now: float, *, grace: float = 120.0, max_machines: int = 64,
                        after: str = "") -> dict:
        """JSON minutes of closed hours into tier-1 chunks (one per machine and hour);
        machines as in ``compact_raw``."""
        cutoff = (now - grace) - (now - grace) % HOUR
        t = MetricRollupRow.__table__
        done: dict = {"chunks": 0, "rows": 0, "values": 0}
        with paused_gc(), self._transaction() as conn:
            mids = _machines(conn, t, t.c.minute < cutoff, after, max_machines)
            done["last"] = mids[-1] if mids else None
            done["machines"] = len(mids)
            if not mids:
                return done
            taken = fetch_all(conn, t.delete().where(t.c.machine_id.in_(mids), t.c.minute < cutoff)
                              .returning(t.c.machine_id, t.c.minute, t.c.payload))
            hours: dict[tuple[str, float], list] = {}
            for mid, minute, payload in sorted(taken, key=lambda r: (r[0], r[1])):
                hours.setdefault((mid, minute - minute % HOUR), []).append((minute, minute_stats(payload)))
            made = []
            for (mid, _), points in hours.items():
                blob, held = stats_chunk(points, level=self.level)
                made.append((mid, points[0][0], points[-1][0], held, blob))
                done["values"] += held
            self._insert(conn, 1, made)
            done["chunks"] += len(made)
            done["rows"] += len(taken)
        return done

    @_translated
    def compact_hours(self, now: float, *, max_machines: int = 64, grace: float = 2 * HOUR) -> dict[str, int]:
        """Tier-1 chunks of closed UTC days into tier-2 chunks (24 hourly points per
        machine and day). Tier-1 chunks stay (they have their own retention)."""
        last_day = (now - grace) - (now - grace) % DAY - DAY  # the newest closed day
        t = MetricChunkRow.__table__
        done = {"chunks": 0, "rows": 0, "values": 0}
        with paused_gc(), self._transaction() as conn:
            cursor = self.store._get_meta(conn, _TIER2_CURSOR)
            if cursor:
                day_s, _, after = cursor.partition(":")
                day = float(day_s)
            else:
                first = conn.execute(sa.select(sa.func.min(t.c.ts_first)).where(t.c.tier == 1)).scalar()
                if first is None:
                    return done
                day, after = first - first % DAY, ""
            while day <= last_day and done["chunks"] < max_machines:
                rows = fetch_all(conn, sa.select(t.c.machine_id, t.c.payload).where(
                    t.c.tier == 1, t.c.ts_first >= day, t.c.ts_first < day + DAY, t.c.machine_id > after)
                    .order_by(t.c.machine_id, t.c.ts_first))
                by_machine: dict[str, list] = {}
                for mid, payload in rows:
                    by_machine.setdefault(mid, []).append(payload)
                for mid, payloads in by_machine.items():
                    points = coarsen((pt for pl in payloads for pt in chunk_stats(pl)), HOUR)
                    if points:
                        blob, held = stats_chunk(points, level=self.level)
                        self._insert(conn, 2, [(mid, points[0][0], points[-1][0], held, blob)])
                        done["chunks"] += 1
                        done["values"] += held
                    done["rows"] += len(payloads)
                    after = mid
                    if done["chunks"] >= max_machines:
                        break
                else:
                    day, after = day + DAY, ""
            if day > last_day or done["chunks"]:
                self.store._set_meta(conn, _TIER2_CURSOR, f"{day!r}:{after}")
        return done

    # ------------------------------------------------------------------ reads

    @_translated
    def read(self, machine_id: str, tier: int, since: float, until: float) -> list[bytes]:
        """Payloads of ``machine_id``'s chunks of ``tier`` overlapping [since, until]."""
        t = MetricChunkRow.__table__
        q = (sa.select(t.c.payload).where(t.c.machine_id == machine_id, t.c.tier == tier,
                                          t.c.ts_last >= since, t.c.ts_first <= until)
             .order_by(t.c.ts_first))
        with self.engine.connect() as conn:
            return [payload for payload, in fetch_all(conn, q)]

    # ------------------------------------------------------------------ retention and size

    @_translated
    def apply_retention(self, now: float, keep: dict[int, float]) -> dict[str, int]:
        """Drop chunks older than their tier's retention (seconds). Postgres: whole
        day partitions (data outlives its retention by less than a day); SQLite:
        one range delete per tier. Returns ``{"partitions": n, "chunks": n}``."""
        done = {"partitions": 0, "chunks": 0}
        t = MetricChunkRow.__table__
        with self._transaction() as conn:
            if self.postgres:
                for name in self._list_partitions(conn):
                    m = _PARTITION.match(name)
                    if m and int(m[1]) in keep and (int(m[2]) + 1) * DAY <= now - keep[int(m[1])]:
                        conn.exec_driver_sql(f"DROP TABLE {name}")
                        done["partitions"] += 1
                        conn.info.setdefault("dropped_partitions", set()).add(name)
            else:
                for tier, seconds in keep.items():
                    done["chunks"] += conn.execute(t.delete().where(
                        t.c.tier == tier, t.c.ts_last < now - seconds)).rowcount
        return done

    @_translated
    def enforce_size(self, max_bytes: int) -> dict:
        """Past ``max_bytes`` on disk (``disk_bytes``: what the store really takes, not
        the chunks' payloads), drop the oldest chunks of the tier holding the most
        droppable bytes until under the bound: on SQLite chunk rows (their pages go to
        the free list and are reused by the next writes), on Postgres whole day
        partitions (deleted rows would not give their space back until a vacuum,
        and the relation would not shrink).

        The newest data is always kept: what is not compacted yet (staged batches and
        minutes) and, per tier, each machine's newest chunk (Postgres: the tier's newest
        day). A bound smaller than that cannot be met by dropping history: the pass
        stops there and says so (``over``) rather than drop everything compacted.
        Returns what was dropped (totals, and per tier ``{chunks, bytes, oldest, newest}``:
        the samples it held), ``disk_bytes`` after and ``over``."""
        done: dict = {"partitions": 0, "chunks": 0, "bytes": 0, "disk_bytes": 0, "tiers": {}, "over": False}
        t = MetricChunkRow.__table__
        newer = t.alias("newer")
        # Not a machine's newest chunk of its tier (the (machine_id, tier, ts_last) index answers it).
        older = t.c.ts_last < (sa.select(sa.func.max(newer.c.ts_last))
                               .where(newer.c.machine_id == t.c.machine_id, newer.c.tier == t.c.tier)
                               .scalar_subquery())

        def note(tier: int, n: int, nbytes: int, first, last) -> None:
            if not n:
                return
            done["chunks"] += n
            done["bytes"] += nbytes
            d = done["tiers"].setdefault(TIER_NAMES.get(tier, str(tier)),
                                         {"chunks": 0, "bytes": 0, "oldest": None, "newest": None})
            d["chunks"] += n
            d["bytes"] += nbytes
            d["oldest"] = first if d["oldest"] is None else min(d["oldest"], first)
            d["newest"] = last if d["newest"] is None else max(d["newest"], last)

        with self._transaction() as conn:
            for _ in range(256):  # each round drops at least one chunk or partition
                excess = self._disk_bytes(conn) - max_bytes
                if excess <= 0:
                    break
                if self.postgres:
                    dropped = self._drop_oldest_partition(conn, note)
                    if not dropped:
                        done["over"] = True  # only each tier's newest day is left
                        break
                    done["partitions"] += dropped
                    continue
                per_tier = {tier: int(n) for tier, n in conn.execute(
                    sa.select(t.c.tier, sa.func.sum(t.c.nbytes)).where(older).group_by(t.c.tier)).all() if n}
                if not per_tier:
                    done["over"] = True  # what is left is the newest data, or not history chunks
                    break
                tier = max(per_tier, key=lambda k: per_tier[k])
                # The oldest chunks holding ``excess`` bytes of payload: a chunk takes at
                # least its payload on disk, so that frees about ``excess`` or more.
                rows = conn.execute(sa.select(t.c.id, t.c.nbytes, t.c.ts_first, t.c.ts_last)
                                    .where(t.c.tier == tier, older).order_by(t.c.ts_last).limit(2000)).all()
                ids, freed = [], 0
                for rid, nbytes, _, _ in rows:
                    ids.append(rid)
                    freed += nbytes
                    if freed >= excess:
                        break
                for i in range(0, len(ids), 500):
                    conn.execute(t.delete().where(t.c.tier == tier, t.c.id.in_(ids[i:i + 500])))
                taken = rows[:len(ids)]
                note(tier, len(ids), freed, min(r[2] for r in taken), max(r[3] for r in taken))
            done["disk_bytes"] = self._disk_bytes(conn)
        return done

    def _drop_oldest_partition(self, conn, note) -> int:
        """Postgres: drop the oldest day partition of the tier holding the most bytes in
        partitions older than its newest chunk's day (empty ones on the way go too).
        Returns the partitions dropped: 0 when every tier is down to its newest day."""
        t = MetricChunkRow.__table__
        days: dict[int, list[int]] = {}
        for m in map(_PARTITION.match, self._list_partitions(conn)):
            if m:
                days.setdefault(int(m[1]), []).append(int(m[2]))
        newest = {tier: int(last // DAY) for tier, last in conn.execute(
            sa.select(t.c.tier, sa.func.max(t.c.ts_last)).group_by(t.c.tier)).all() if last is not None}
        per_tier = {}
        for tier, day in newest.items():
            n = conn.execute(sa.select(sa.func.sum(t.c.nbytes)).where(
                t.c.tier == tier, t.c.ts_last < day * DAY)).scalar()
            if n:
                per_tier[tier] = int(n)
        if not per_tier:
            return 0
        tier = max(per_tier, key=lambda k: per_tier[k])
        dropped = 0
        for day in sorted(d for d in days.get(tier, ()) if d < newest[tier]):
            name = f"metric_chunks_t{tier}_d{day}"
            n, nbytes, first, last = conn.exec_driver_sql(
                f"SELECT count(*), coalesce(sum(nbytes), 0), min(ts_first), max(ts_last) FROM {name}").one()
            conn.exec_driver_sql(f"DROP TABLE {name}")
            conn.info.setdefault("dropped_partitions", set()).add(name)
            note(tier, n, int(nbytes), first, last)
            dropped += 1
            if n:
                break
        return dropped

    @_translated
    def default_bound(self) -> tuple[int, str]:
        """The size bound when ``max_store_size`` is not set, and how it was chosen.

        SQLite: half of what the store's filesystem has free plus what the store
        takes already, measured at start (the file, its write-ahead log and the
        rest of the disk's users share that disk). Postgres: ``POSTGRES_BOUND``
        (the control plane cannot see the database server's disk)."""
        if self.postgres:
            return POSTGRES_BOUND, "fixed default for Postgres"
        database = self.engine.url.database
        if not database or database == ":memory:":
            return MEMORY_BOUND, "fixed default for an in-memory store"
        with self.engine.connect() as conn:
            used = self._disk_bytes(conn)
        free = shutil.disk_usage(Path(database).resolve().parent).free
        return (free + used) // 2, "half of the free disk at start"

    @_translated
    def usage(self) -> dict:
        """Per tier: chunks, bytes, values, oldest and newest sample; plus what waits
        to be compacted (raw batches, JSON minutes)."""
        t = MetricChunkRow.__table__
        out: dict = {"tiers": {}}
        with self.engine.connect() as conn:
            for tier, n, nbytes, nvalues, oldest, newest in conn.execute(sa.select(
                    t.c.tier, sa.func.count(), sa.func.sum(t.c.nbytes), sa.func.sum(t.c.nvalues),
                    sa.func.min(t.c.ts_first), sa.func.max(t.c.ts_last)).group_by(t.c.tier)):
                out["tiers"][TIER_NAMES.get(tier, str(tier))] = {
                    "chunks": n, "bytes": int(nbytes or 0), "values": int(nvalues or 0),
                    "oldest": oldest, "newest": newest}
            b, r = MetricBatchRow.__table__, MetricRollupRow.__table__
            out["pending"] = {}
            for name, table, ts in (("raw_batches", b, b.c.ts_first), ("minutes", r, r.c.minute)):
                n, nbytes, oldest = conn.execute(sa.select(
                    sa.func.count(), sa.func.sum(sa.func.length(table.c.payload)), sa.func.min(ts))).one()
                out["pending"][name] = {"rows": n, "bytes": int(nbytes or 0), "oldest": oldest}
            out["disk_bytes"] = self._disk_bytes(conn)
        return out

    def _disk_bytes(self, conn) -> int:
        """Bytes the store takes on disk: the SQLite file's used pages, or Postgres'
        metric tables (partitions, indexes and TOAST included)."""
        if self.postgres:
            return int(conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relkind = 'r' AND starts_with(c.relname, 'metric')").scalar())
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar()
        return int((pages - free) * conn.exec_driver_sql("PRAGMA page_size").scalar())


def _machines(conn, t: sa.Table, old, after: str, limit: int) -> list[str]:
    """The next ``limit`` machines (by id, after ``after``) with rows matching ``old``:
    read in the order of the (machine_id, time) index, so the database stops after
    ``limit`` machines instead of grouping every row of a 10,000-machine table."""
    return list(conn.execute(sa.select(t.c.machine_id).where(old, t.c.machine_id > after)
                             .group_by(t.c.machine_id).order_by(t.c.machine_id).limit(limit)).scalars())


class _Tx:
    """``engine.begin()`` that keeps the Postgres partition cache true to what committed."""

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self._cm = chunks.engine.begin()

    def __enter__(self):
        self.conn = self._cm.__enter__()
        return self.conn

    def __exit__(self, *exc):
        new = self.conn.info.pop("new_partitions", set())
        dropped = self.conn.info.pop("dropped_partitions", set())
        result = self._cm.__exit__(*exc)
        if self.chunks._partitions is not None:
            if exc[0] is None:
                self.chunks._partitions |= new
                self.chunks._partitions -= dropped
            else:
                self.chunks._partitions = None  # re-read next time
        return result


__all__ = ["Chunks"]
