"""Rollups and retention with an injected clock, on SQLite and Postgres."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from centrality_core.summary import split_key, summarize
from control_plane.rollups import Rollups, matrix, row_stats
from control_plane.store import Store, staged
from control_plane.store.db import WriteBatch
from control_plane.store.models import MetricChunkRow, MetricRollupRow

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def add(r: Rollups, machine_id: str, ts: list[float], keys: list[str], columns: list[list]) -> None:
    r.add(machine_id, ts, keys, matrix(columns, len(ts)))


def test_rollups_min_avg_max_per_minute_and_split_batches():
    r = Rollups()
    # One batch straddling a minute boundary, one later batch in the first minute.
    add(r, "m1", [T0 + 58, T0 + 59, T0 + 60, T0 + 61], ["cpu.percent", "gpu[0].util_percent"],
          [[10.0, 30.0, 50.0, None], [None, 100.0, 0.0, 0.0]])
    add(r, "m1", [T0 + 10], ["cpu.percent"], [[20.0]])
    assert r.take_closed(T0 + 60 + 29) == []  # minute 0 ends at +60; grace 30 s not over
    closed = r.take_closed(T0 + 60 + 30)
    assert [(row["machine_id"], row["minute"], row["stats"].as_dict()) for row in closed] == [
        ("m1", T0, {"cpu.percent": [10.0, 30.0, 60.0, 3], "gpu[0].util_percent": [100.0, 100.0, 100.0, 1]})]
    later = r.take_closed(T0 + 200)
    assert later[0]["minute"] == T0 + 60
    assert later[0]["stats"].as_dict() == {"cpu.percent": [50.0, 50.0, 50.0, 1],
                                           "gpu[0].util_percent": [0.0, 0.0, 0.0, 2]}
    assert r.buckets == {}


def test_rollups_merge_batches_of_same_and_changing_keys():
    r = Rollups()
    keys = ["a", "b"]
    add(r, "m1", [T0 + 1, T0 + 2], keys, [[1.0, 5.0], [7.0, 7.0]])
    add(r, "m1", [T0 + 3, T0 + 4], keys, [[0.5, 2.0], [9.0, 8.0]])     # same keys: merged column-wise
    add(r, "m1", [T0 + 5], ["a", "c", "b"], [[3.0], [None], [1.0]])      # a key appears, with no value
    add(r, "m1", [T0 + 6], ["c"], [[4.0]])                                # and gets one later
    add(r, "m2", [T0 + 1], ["a"], [[None]])                               # nothing to roll up
    (m1,) = r.take_closed(T0 + 200)  # m2's minute had no values: no row
    assert m1["stats"].as_dict() == {"a": [0.5, 5.0, 11.5, 5], "b": [1.0, 9.0, 32.0, 5], "c": [4.0, 4.0, 4.0, 1]}
    assert r.buckets == {}


def test_a_flush_hands_out_at_most_its_limit_the_oldest_first_and_the_rest_later():
    """A join of thousands replaying their outboxes closes tens of thousands of minutes at
    once; each flush takes a bounded share (it runs on the event loop) and loses none."""
    r = Rollups()
    for i in range(5):  # m1 and m2, minutes 4, 3, ... 0 (a replay arrives newest last, or not)
        for mid in ("m1", "m2"):
            add(r, mid, [T0 + 60 * (4 - i) + 1], ["a"], [[float(i)]])
    first = r.take_closed(T0 + 3600, limit=4)
    assert sorted(row["minute"] for row in first) == [T0, T0, T0 + 60, T0 + 60]
    rest = r.take_closed(T0 + 3600, limit=4) + r.take_closed(T0 + 3600, limit=4)
    assert sorted((row["machine_id"], row["minute"]) for row in first + rest) == sorted(
        (mid, T0 + 60 * k) for mid in ("m1", "m2") for k in range(5))
    assert r.buckets == {} and r.take_closed(T0 + 3600, limit=4) == []


def test_late_samples_merge_into_a_stored_minute(store_url):
    store = Store(store_url)
    store.migrate()
    b = WriteBatch()
    b.rollups.append({"machine_id": "m1", "minute": T0, "stats": {"cpu.percent": [10.0, 30.0, 40.0, 2]}})
    store.write(b)
    b = WriteBatch()
    b.rollups.append({"machine_id": "m1", "minute": T0, "stats": {"cpu.percent": [5.0, 20.0, 25.0, 2],
                                                                  "mem.percent": [50.0, 50.0, 50.0, 1]}})
    store.write(b)
    ((minute, payload),) = store.metric_rollups("m1", T0 - 1, T0 + 1)
    assert minute == T0 and staged.is_staged_minute(payload)
    assert staged.minute_stats(payload).as_dict() == {"cpu.percent": [5.0, 30.0, 65.0, 4], "mem.percent": [50.0, 50.0, 50.0, 1]}
    store.close()


def test_a_minute_stored_as_json_by_an_earlier_version_takes_late_samples(store_url):
    """Minutes staged before an upgrade are JSON rows: a late batch merges into one, and
    the row is then in the staged form (same keys merged column-wise, others by name)."""
    store = Store(store_url)
    store.migrate()
    rollups = MetricRollupRow.__table__
    with store.engine.begin() as conn:
        conn.execute(rollups.insert(), [
            {"machine_id": "m1", "minute": T0, "payload": msgspec.json.encode({"a": [1.0, 2.0, 3.0, 2]})},
            {"machine_id": "m1", "minute": T0 + 60, "payload": msgspec.json.encode({"a": [1.0, 2.0, 3.0, 2],
                                                                                    "b": [7.0, 7.0, 7.0, 1]})}])
    r = Rollups()
    add(r, "m1", [T0 + 5, T0 + 61], ["a"], [[0.5, 9.0]])
    b = WriteBatch()
    b.rollups.extend(r.take_closed(T0 + 600))
    store.write(b)
    rows = store.metric_rollups("m1", T0 - 1, T0 + 61)
    assert all(staged.is_staged_minute(p) for _, p in rows)
    assert [(m, staged.minute_stats(p).as_dict()) for m, p in rows] == [
        (T0, {"a": [0.5, 2.0, 3.5, 3]}), (T0 + 60, {"a": [1.0, 9.0, 12.0, 3], "b": [7.0, 7.0, 7.0, 1]})]
    store.close()


def test_minutes_stored_as_json_by_an_earlier_version_compact_into_the_same_chunk(store_url):
    from control_plane.store.chunks import Chunks

    r = Rollups()
    for k in range(60):
        add(r, "m1", [T0 + 60 * k + 1, T0 + 60 * k + 2], ["a", "b"], [[k * 0.5, 1.0], [None, k + 0.25]])
    rows = r.take_closed(T0 + 7200)
    blobs = []
    for form in ("json", "staged"):
        store = Store(store_url)
        store.migrate()
        with store.engine.begin() as conn:
            conn.execute(MetricRollupRow.__table__.delete())
            conn.execute(MetricChunkRow.__table__.delete())
            conn.execute(MetricRollupRow.__table__.insert(), [
                {"machine_id": "m1", "minute": x["minute"],
                 "payload": msgspec.json.encode(x["stats"].as_dict()) if form == "json"
                 else staged.encode_minute(x["stats"])} for x in rows])
        chunks = Chunks(store)
        assert chunks.compact_minutes(T0 + 7200)["rows"] == 60
        blobs.append(list(chunks.read("m1", 1, T0, T0 + 3600)))
        store.close()
    assert len(blobs[0]) == 1 and blobs[0] == blobs[1]


def test_retention_applies_to_every_table(store_url):
    store = Store(store_url)
    store.migrate()
    now = T0 + 40 * 86400
    b = WriteBatch()
    for age, tag in ((3 * 3600, "old"), (60, "new")):
        ts = now - age
        b.metric_batches.append({"machine_id": "m1", "ts_first": ts, "ts_last": ts,
                                 "payload": msgspec.json.encode({"ts": [ts], "keys": [tag], "columns": [[1.0]]})})
    for age in (8 * 86400, 86400):
        b.rollups.append({"machine_id": "m1", "minute": now - age - (now - age) % 60, "stats": {"x": [1, 1, 1, 1]}})
    for age in (31 * 86400, 86400):
        b.events.append({"ts": now - age, "kind": "registered", "machine_id": "m1", "machine_name": "n",
                         "from_state": None, "to_state": "live", "reason": "", "actor": "t"})
    store.write(b)
    deleted = store.apply_retention(now, raw=2 * 3600, rollups=7 * 86400, events=30 * 86400)
    assert deleted == {"metric_batches": 1, "metric_rollups": 1, "events": 1, "join_tokens": 0}
    (payload,) = store.metric_batches("m1", 0, now)
    assert msgspec.json.decode(payload)["keys"] == ["new"]
    assert len(store.metric_rollups("m1", 0, now)) == 1
    assert len(store.events()) == 1
    store.close()


def test_summary_of_a_gpu_machine():
    values = {"cpu.percent": 40.0, "mem.percent": 50.0, "fs[/].percent": 20.0, "fs[/data].percent": 97.0,
              "net[eth0].recv_bytes_per_s": 100.0, "net[eth0.100].sent_bytes_per_s": 50.0,
              "gpu[0].util_percent": 100.0, "gpu[1].util_percent": 0.0,
              "gpu[0].mem_used_bytes": 30.0, "gpu[0].mem_total_bytes": 80.0,
              "gpu[1].mem_used_bytes": 10.0, "gpu[1].mem_total_bytes": 80.0}
    s = summarize(values)
    assert (s.cpu_percent, s.mem_percent, s.gpu_util_percent, s.gpu_mem_percent, s.disk_percent,
            s.net_bytes_per_s, s.gpu_count) == (40.0, 50.0, 50.0, 25.0, 97.0, 150.0, 2)
    assert split_key("net[eth0.100].sent_bytes_per_s") == ("net", "eth0.100", "sent_bytes_per_s")
    assert summarize({}).gpu_count == 0 and summarize({}).cpu_percent is None


_VALUES = st.one_of(st.just(math.nan), st.just(-0.0),
                    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 70)), elements=_VALUES))
def test_row_stats_are_those_of_the_values(a):
    """min, max and count of each key's values exactly (NaN for none), and their sum to
    within rounding, for batches of one sample to a long replay's."""
    mins, maxs, sums, counts = row_stats(a)
    for j, row in enumerate(a.tolist()):
        have = [v for v in row if v == v]
        assert counts[j] == len(have)
        assert sums[j] == pytest.approx(math.fsum(have), rel=1e-12, abs=1e-9 + 1e-15 * sum(map(abs, have)))
        if have:
            assert mins[j] == min(have) and maxs[j] == max(have)
        else:
            assert math.isnan(mins[j]) and math.isnan(maxs[j])
