"""Metric chunks on SQLite and a real Postgres: compaction, one series, tiers, retention, the bound."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa

from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.sampler import columnar
from centrality_core import protocol as p
from control_plane import history
from control_plane.rollups import Rollups, matrix
from control_plane.store import Store, staged
from control_plane.store.chunks import Chunks
from control_plane.store.db import WriteBatch

T0 = 1_799_971_200.0  # a UTC day boundary: 2027-01-15 00:00
assert T0 % 86400 == 0


def query(*args) -> list[dict]:
    """``history.query`` as a user sees it (JSON objects)."""
    return history.as_dicts(history.query(*args))


def fill(store: Store, machine: str, start: float, seconds: int, *, profile: str = "cpu", packed: bool = True,
         extra_key_from: float | None = None, gap: tuple[float, float] | None = None,
         staged_form: bool = True) -> Rollups:
    """Batches of 5 samples, written like the control plane does (staged, ``store/staged.py``;
    ``staged_form=False``: as the agent's JSON frame, as versions before stored them), and
    the minutes they make (written too). A key appears at ``extra_key_from``;
    ``cpu.percent`` is missing in ``gap``."""
    f = FakeCollectors(profile, 7)
    r = Rollups()
    b = WriteBatch()
    for seq, first in enumerate(range(0, seconds, 5), 1):
        ts = [start + first + i + 0.25 for i in range(5)]
        rows = []
        for t in ts:
            v, _ = f.sample(t)
            v = dict(v)
            v["mem.used_bytes"] += 0.4  # agents send unrounded values; the store keeps the precision
            if extra_key_from is not None and t >= extra_key_from:
                v["disk[sdz].read_iops"] = 12.5
            if gap and gap[0] <= t < gap[1]:
                del v["cpu.percent"]
            rows.append(v)
        batch = columnar("s1", seq, ts, rows, {"nvidia_smi": f"screen {seq}"} if seq % 6 == 0 else None,
                         packed=packed)
        a = matrix(batch.column_lists() if hasattr(batch, "column_lists")
                   else p.unpack_values(batch.values, len(ts)), len(ts))
        b.metric_batches.append({"machine_id": machine, "ts_first": min(ts), "ts_last": max(ts), "payload": (
            staged.encode(ts, batch.keys, batch.values or a, batch.text) if staged_form else p.encode(batch))})
        r.add(machine, ts, batch.keys, a)
    b.rollups.extend(r.take_closed(start + seconds + 3600))
    store.write(b)
    return r


def count(store, table, **where) -> int:
    with store.engine.connect() as conn:
        t = sa.table(table, *(sa.column(k) for k in where))
        q = sa.select(sa.func.count()).select_from(t)
        for k, v in where.items():
            q = q.where(t.c[k] == v)
        return conn.execute(q).scalar()


def test_compaction_keeps_one_series_exactly(store):
    fill(store, "m1", T0, 1800, extra_key_from=T0 + 700, gap=(T0 + 100, T0 + 130))
    fill(store, "m2", T0, 1800, packed=False)
    chunks = Chunks(store)
    now = T0 + 1800 + 600
    before = {m: query(store, chunks, m, T0, now, None, "raw") for m in ("m1", "m2")}
    assert len(before["m1"]) == 1800
    assert before["m1"][0]["mem.used_bytes"] % 1 == 0  # read at the stored precision, compacted or not
    assert "cpu.percent" not in before["m1"][100] and "disk[sdz].read_iops" in before["m1"][-1]

    done = chunks.compact_raw(now, window=600, max_machines=1)  # one machine per transaction
    assert done["chunks"] == 3 and done["rows"] == 360 and done["last"] == "m1" and done["machines"] == 1
    assert chunks.compact_raw(now, window=600, after="m2")["last"] is None  # no machine after m2
    done = chunks.compact_raw(now, window=600, after="m1")
    assert done["chunks"] == 3 and done["last"] == "m2"
    assert chunks.compact_raw(now, window=600) == {"chunks": 0, "rows": 0, "values": 0, "machines": 0, "last": None}  # idempotent
    assert count(store, "metric_batches") == 0
    assert count(store, "metric_chunks", tier=0) == 6
    after = {m: query(store, chunks, m, T0, now, None, "raw") for m in ("m1", "m2")}
    assert after == before
    # a window inside a chunk, and a key pattern
    part = query(store, chunks, "m1", T0 + 100.25, T0 + 104.25, ["cpu"], "raw")
    assert [r["ts"][-10:] for r in part] == [f"01:{40 + i:02d}.250Z" for i in range(5)]
    assert all("mem.used_bytes" not in r for r in part)


def test_batches_staged_by_earlier_versions_read_and_compact_as_one_series_with_new_ones(store):
    fill(store, "new", T0, 1200, profile="gpu8")
    fill(store, "mix", T0, 600, profile="gpu8", staged_form=False)  # JSON frames, staged before an upgrade
    fill(store, "mix", T0 + 600, 600, profile="gpu8")               # then the staged form
    chunks = Chunks(store)
    new = query(store, chunks, "new", T0, T0 + 1200, None, "raw")
    assert query(store, chunks, "mix", T0, T0 + 1200, None, "raw") == new
    while chunks.compact_raw(T0 + 3600, window=600)["chunks"]:
        pass
    assert count(store, "metric_batches") == 0 and count(store, "metric_chunks", tier=0) == 4
    assert query(store, chunks, "mix", T0, T0 + 1200, None, "raw") == new
    assert query(store, chunks, "new", T0, T0 + 1200, None, "raw") == new
    assert len(new) == 1200 and len(new[0]) > 200


def test_raw_batches_and_chunks_read_as_one_series(store):
    fill(store, "m1", T0, 1200)
    chunks = Chunks(store)
    chunks.compact_raw(T0 + 700, window=600)  # the first window only
    fill(store, "m1", T0 + 1200, 60)          # and newer batches, still raw
    rows = query(store, chunks, "m1", T0, T0 + 2000, ["cpu.percent"], "raw")
    assert count(store, "metric_chunks") == 1 and count(store, "metric_batches") == 132
    stamps = [r["ts"] for r in rows]
    assert len(stamps) == 1260 == len(set(stamps)) and stamps == sorted(stamps)


def test_text_streams_survive_compaction(store):
    fill(store, "m1", T0, 600, profile="gpu8")
    chunks = Chunks(store)
    chunks.compact_raw(T0 + 3600, window=600)
    (blob,) = chunks.read("m1", 0, T0, T0 + 600)
    from control_plane.store import tsz
    c = tsz.decode(blob)
    assert [t for _, _, t in c.text] == [f"screen {i}" for i in range(6, 121, 6)]
    assert len(c.keys) > 200


def test_minutes_and_hours_tiers_match_the_minutes(store):
    fill(store, "m1", T0, 3 * 3600, extra_key_from=T0 + 5000)
    chunks = Chunks(store)
    now = T0 + 86400 + 4 * 3600
    minutes = query(store, chunks, "m1", T0, now, None, "1m")
    hours = query(store, chunks, "m1", T0, now, None, "1h")
    assert len(minutes) == 180 and len(hours) == 3
    assert chunks.compact_minutes(now)["chunks"] == 3
    assert count(store, "metric_rollups") == 0
    assert query(store, chunks, "m1", T0, now, None, "1m") == minutes  # minutes are kept exactly
    assert query(store, chunks, "m1", T0, now, None, "1h") == hours   # hours from minute chunks
    assert chunks.compact_hours(now)["chunks"] == 1
    assert chunks.compact_hours(now)["chunks"] == 0  # the day is done
    assert count(store, "metric_chunks", tier=2) == 1
    from_tier2 = query(store, chunks, "m1", T0, now, None, "1h")
    assert [r["ts"] for r in from_tier2] == [r["ts"] for r in hours]
    for a, b in zip(from_tier2, hours):
        assert a.keys() == b.keys()
        for k in a:
            if k != "ts":
                assert math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=0.01), k


def test_retention_per_tier_drops_chunks_whole(store):
    chunks = Chunks(store)
    for day in range(4):
        fill(store, "m1", T0 + day * 86400, 600)
    now = T0 + 4 * 86400
    while chunks.compact_raw(now)["chunks"]:
        pass
    assert count(store, "metric_chunks", tier=0) == 4
    done = chunks.apply_retention(now, {0: 2 * 86400, 1: 30 * 86400})
    # days 0 and 1 are older than 2 days. (An hour later SQLite would delete day 2's chunk too;
    # Postgres keeps its partition until the whole day is past the retention.)
    if store.dialect == "postgresql":
        assert done == {"partitions": 2, "chunks": 0}
        with store.engine.connect() as conn:
            names = set(conn.exec_driver_sql(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metric_chunks'").scalars())
        day = int(T0 // 86400)
        assert names == {f"metric_chunks_t0_d{day + 2}", f"metric_chunks_t0_d{day + 3}"}
    else:
        assert done == {"partitions": 0, "chunks": 2}
    assert count(store, "metric_chunks", tier=0) == 2
    rows = query(store, chunks, "m1", T0, now, ["cpu.percent"], "raw")
    assert rows[0]["ts"].startswith("2027-01-17")  # day 2 of T0 = 2027-01-15


def test_size_bound_counts_the_disk_and_drops_the_oldest_first(store):
    """The bound is on what the store takes on disk; the oldest data goes first (SQLite:
    chunk rows, their pages reused by later writes; Postgres: whole day partitions)."""
    chunks = Chunks(store)
    for day in range(4):
        fill(store, "m1", T0 + day * 86400, 600)
    while chunks.compact_raw(T0 + 5 * 86400)["chunks"]:
        pass
    disk = chunks.usage()["disk_bytes"]
    assert chunks.enforce_size(disk) == {"partitions": 0, "chunks": 0, "bytes": 0, "disk_bytes": disk, "tiers": {},
                                         "over": False}
    done = chunks.enforce_size(disk - 1)  # one byte too many: the oldest day goes, only it
    assert done["chunks"] == 1 and done["disk_bytes"] < disk
    assert done["partitions"] == (1 if store.dialect == "postgresql" else 0)
    usage = chunks.usage()
    assert usage["disk_bytes"] == done["disk_bytes"] <= disk - 1
    assert usage["tiers"]["raw"]["chunks"] == 3 and usage["tiers"]["raw"]["oldest"] >= T0 + 86400
    rows = query(store, chunks, "m1", T0, T0 + 5 * 86400, ["cpu.percent"], "raw")
    assert rows[0]["ts"].startswith("2027-01-16") and len(rows) == 3 * 600
    if store.dialect == "sqlite":  # freed pages are reused: another day fits in the file as it is
        with store.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        fill(store, "m1", T0 + 4 * 86400, 600)
        while chunks.compact_raw(T0 + 6 * 86400)["chunks"]:
            pass
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_count").scalar() == pages
    assert done["tiers"] == {"raw": {"chunks": 1, "bytes": done["bytes"], "oldest": T0 + 0.25,
                                     "newest": T0 + 599.25}} and not done["over"]


def test_a_bound_below_the_newest_data_keeps_it_and_says_so(store):
    """A bound smaller than what is not compacted yet (staged batches and minutes count on
    disk, and cannot be dropped) no longer empties the history: the oldest chunks go, each
    machine's newest chunk of each tier (Postgres: each tier's newest day) stays, and the
    pass says the bound is not met."""
    chunks = Chunks(store)
    for day in range(3):
        for m in ("m1", "m2"):
            fill(store, m, T0 + day * 86400, 600)
    while chunks.compact_raw(T0 + 4 * 86400)["chunks"]:
        pass
    while chunks.compact_minutes(T0 + 4 * 86400)["chunks"]:
        pass
    fill(store, "m1", T0 + 4 * 86400, 1200)  # the newest samples: staged, not compacted yet
    before = chunks.usage()
    assert before["tiers"]["raw"]["chunks"] == 6 and before["tiers"]["1m"]["chunks"] == 6
    done = chunks.enforce_size(1)
    assert done["over"] and done["disk_bytes"] > 1
    after = chunks.usage()
    assert after["pending"] == before["pending"]  # nothing staged is touched
    if store.dialect == "postgresql":  # whole days: the newest day of each tier stays
        assert done["partitions"] == 4 and done["chunks"] == 8
    else:  # each machine's newest chunk of each tier stays
        assert done["chunks"] == 8
    assert after["tiers"]["raw"]["chunks"] == after["tiers"]["1m"]["chunks"] == 2
    assert after["tiers"]["raw"]["oldest"] >= T0 + 2 * 86400
    assert done["tiers"]["raw"] == {"chunks": 4, "bytes": done["tiers"]["raw"]["bytes"],
                                    "oldest": T0 + 0.25, "newest": T0 + 86400 + 599.25}
    assert done["tiers"]["1m"]["chunks"] == 4 and done["tiers"]["1m"]["newest"] < T0 + 2 * 86400
    rows = query(store, chunks, "m1", T0, T0 + 5 * 86400, ["cpu.percent"], "raw")
    assert len(rows) == 600 + 1200 and rows[0]["ts"].startswith("2027-01-17")  # the newest day, then staged
    again = chunks.enforce_size(1)  # nothing more to drop: the same answer, nothing lost
    assert again["chunks"] == 0 and again["over"] and chunks.usage()["tiers"] == after["tiers"]


def test_default_bound_is_half_the_free_disk_on_sqlite(store):
    import shutil

    bound, why = Chunks(store).default_bound()
    if store.dialect == "postgresql":
        assert (bound, why) == (100 * 10 ** 9, "fixed default for Postgres")
        return
    free = shutil.disk_usage(store.engine.url.database.rsplit("/", 1)[0]).free
    assert abs(bound - free // 2) < 50 * 2 ** 20 and why == "half of the free disk at start"


def test_rollup_rows_from_arrays_match_the_rows_from_points():
    points = [(T0 + 60 * i, {"cpu.percent": [1.0 + i, 9.5, 30.0 + i, 6], "gpu[0].temp_c": [40.0, 41.0, 81.0, 2]})
              for i in range(5)]
    points[2][1].pop("gpu[0].temp_c")  # a key missing for a minute
    blob, held = history.stats_chunk(points)
    assert held == 9
    series = [history.stats_arrays(blob)]
    expected = history.as_dicts(history.rollup_rows(history.chunk_stats(blob), T0, T0 + 600, None))
    assert history.as_dicts(history.rollup_matrix_rows(series, T0, T0 + 600, None)) == expected
    assert "gpu[0].temp_c" not in expected[2] and expected[0]["cpu.percent"] == 5.0
    assert expected[0]["gpu[0].temp_c:max"] == 41.0
    # a minute in two chunks (late samples) is merged into one row
    late, _ = history.stats_chunk([(T0 + 60, {"cpu.percent": [0.5, 20.0, 1.0, 1]})])
    rows = history.as_dicts(history.rollup_matrix_rows(series + [history.stats_arrays(late)], T0, T0 + 600, ["cpu"]))
    assert len(rows) == 5
    assert rows[1]["cpu.percent:min"] == 0.5 and rows[1]["cpu.percent:max"] == 20.0
    assert rows[1]["cpu.percent"] == (31.0 + 1.0) / 7


def test_partitions_are_made_ahead_on_postgres(store):
    chunks = Chunks(store)
    chunks.prepare(T0 + 3600)
    chunks.prepare(T0 + 3600)  # again: nothing to do
    if store.dialect != "postgresql":
        return
    with store.engine.connect() as conn:
        names = set(conn.exec_driver_sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metric_chunks'").scalars())
    day = int(T0 // 86400)
    assert names == {f"metric_chunks_t{t}_d{day + d}" for t in (0, 1, 2) for d in (-1, 0, 1)}
    fill(store, "m1", T0, 600)
    assert chunks.compact_raw(T0 + 3600)["chunks"] == 1  # into a partition made ahead


def test_auto_resolution_picks_the_tier_that_holds_the_window():
    keep = {"raw": 2 * 86400, "1m": 30 * 86400, "1h": 730 * 86400}
    assert history.pick_resolution(600, 600, keep) == "raw"
    assert history.pick_resolution(3600, 3600, keep) == "raw"
    assert history.pick_resolution(86400, 86400, keep) == "1m"            # the dashboard's 24 h
    assert history.pick_resolution(3600, 3 * 86400, keep) == "1m"         # past the raw retention
    assert history.pick_resolution(14 * 86400, 14 * 86400, keep) == "1h"
    assert history.pick_resolution(3600, 60 * 86400, keep) == "1h"        # past the minutes' retention


def test_store_size_setting_takes_units():
    from centrality_core.errors import UsageError
    from centrality_core.settings import _coerce

    assert _coerce("max_store_size", "50G") == 50 * 10 ** 9
    assert _coerce("max_store_size", "512MiB") == 512 * 2 ** 20
    assert _coerce("max_store_size", 1000) == 1000
    with pytest.raises(UsageError):
        _coerce("max_store_size", "lots")


def test_answer_json_whole_numbers_as_integers_gaps_left_out(store):
    """What ``metrics NAME --json`` prints: whole-number keys (bytes, per-core percent)
    as integers, others as decimals, a missing value absent; raw and minutes alike,
    compacted or not."""
    import msgspec

    fill(store, "m1", T0, 900, gap=(T0 + 100, T0 + 130))
    chunks = Chunks(store)
    before = msgspec.json.decode(msgspec.json.encode(history.query(store, chunks, "m1", T0, T0 + 900, None, "raw")))
    minutes_before = msgspec.json.decode(msgspec.json.encode(
        history.query(store, chunks, "m1", T0, T0 + 900, None, "1m")))
    chunks.compact_raw(T0 + 3 * 3600)
    chunks.compact_minutes(T0 + 3 * 3600)
    after = msgspec.json.decode(msgspec.json.encode(history.query(store, chunks, "m1", T0, T0 + 900, None, "raw")))
    minutes = msgspec.json.decode(msgspec.json.encode(history.query(store, chunks, "m1", T0, T0 + 900, None, "1m")))
    assert after == before and minutes == minutes_before
    row = after[0]
    assert type(row["mem.used_bytes"]) is int and type(row["cpu[0].percent"]) is int
    assert type(row["cpu.percent"]) is float
    assert all("cpu.percent" not in r for r in after if "T00:01:4" in r["ts"])  # T0+100..130: missing
    assert sum("cpu.percent" in r for r in after) == 900 - 30
    m = minutes[0]
    assert type(m["mem.used_bytes:min"]) is int and type(m["mem.used_bytes:max"]) is int
    assert type(m["mem.used_bytes"]) is float  # an average
    assert m["mem.used_bytes:min"] <= m["mem.used_bytes"] <= m["mem.used_bytes:max"]


def test_a_window_without_gaps_answers_the_same_json_as_built_key_by_key(store):
    """The fast path (no gaps: whole and decimal values made in one go each) prints what a
    row built value by value prints: same keys, same order, integers where whole."""
    import msgspec

    from centrality_core.precision import digits
    from control_plane.store import tsz

    fill(store, "m1", T0, 300, profile="gpu8")
    chunks = Chunks(store)
    got = msgspec.json.encode(history.query(store, chunks, "m1", T0, T0 + 300, None, "raw"))
    expected = []
    for payload in store.metric_batches("m1", T0, T0 + 300):
        b = history.batch_arrays(payload)
        v = tsz.quantize(b.keys, b.values)
        for i, stamp in enumerate(history.iso_ms(tsz.quantize_ts(b.ts))):
            expected.append({"ts": stamp, **{k: int(v[j, i]) if digits(k) == 0 else float(v[j, i])
                                             for j, k in enumerate(b.keys)}})
    assert got == msgspec.json.encode(expected)
    assert b'"gpu[0].mem_used_bytes":' in got and b'"cpu.percent":' in got

    (blob,) = [history.stats_chunk([(x["minute"], x["stats"]) for x in fill_minutes(store)])[0]]
    by_key = history.rollup_rows(history.chunk_stats(blob), T0, T0 + 300, None)
    from_arrays = history.rollup_matrix_rows([history.stats_arrays(blob)], T0, T0 + 300, None)
    assert msgspec.json.encode(from_arrays) == msgspec.json.encode(by_key) and len(by_key) == 5


def fill_minutes(store: Store) -> list[dict]:
    """The minutes written by ``fill``, as the store holds them."""
    return [{"minute": minute, "stats": staged.minute_stats(payload).as_dict()}
            for minute, payload in store.metric_rollups("m1", 0, 1e12)]


def test_columns_answer_the_same_rows_as_rows(store):
    """``metrics --columns`` (keys once, values packed), made into rows by the client, is
    what ``metrics`` answers as rows, byte for byte once printed: raw samples compacted and
    not, a key missing for a while and one appearing mid-window, minutes and hours, a stream."""
    import msgspec

    from centrality_core import documents as d

    fill(store, "m1", T0, 2 * 3600, profile="gpu8", extra_key_from=T0 + 2000, gap=(T0 + 100, T0 + 130))
    chunks = Chunks(store)
    chunks.compact_raw(T0 + 3600, window=1800)  # the first half hour compacted, the rest staged
    chunks.compact_minutes(T0 + 3 * 3600 - 10)  # the first hour of minutes compacted
    windows = [(T0, T0 + 2 * 3600, "raw"), (T0 + 1500, T0 + 2500, "raw"), (T0, T0 + 2 * 3600, "1m"),
               (T0, T0 + 2 * 3600, "1h"), (T0 + 3 * 3600, T0 + 4 * 3600, "raw")]
    for since, until, resolution in windows:
        for patterns in (None, ["cpu", "disk"]):
            rows = msgspec.json.encode(history.query(store, chunks, "m1", since, until, patterns, resolution))
            doc = history.query_columns(store, chunks, "m1", since, until, patterns, resolution)
            wire = msgspec.json.decode(msgspec.json.encode(doc), type=d.MetricColumns)
            assert msgspec.json.encode(d.metric_rows(wire)) == rows, (since, until, resolution, patterns)
    doc = history.query_columns(store, chunks, "m1", T0, T0 + 2 * 3600, None, "raw")
    assert len(doc.ts) == 7200 and len(doc.keys) > 200 and doc.gaps  # the gap and the late key: partial rows
    assert "disk[sdz].read_iops" in doc.keys and "mem.used_bytes" in [doc.keys[j] for j in doc.ints]
    assert history.query_columns(store, chunks, "m1", T0 + 5 * 3600, T0 + 6 * 3600, None, "raw").ts == []
