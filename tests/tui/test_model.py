"""The dashboard's pure parts: fleet model, series and charts, formatting, feed. No Textual."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from centrality_core.backoff import Backoff
from centrality_core.documents import Event, decode_subscription
from tui import format as fmt
from tui.feed import Feed
from tui.model import SPARK_LEN, FleetModel
from tui.series import Series, charts, tick_labels
from tui.source import SourceError

from .conftest import EVIL_HOSTNAME, FROZEN, scenario


def row(name, state="live", **kw):
    r = {"name": name, "state": state, "hostname": name, "labels": {}, "gpu_count": 0, "cpu_count": 4,
         "last_heartbeat": "2027-01-15T08:00:00.000Z", "heartbeat_age_s": 0.5, "sample_ts": None,
         "cpu_percent": None, "mem_percent": None, "gpu_util_percent": None, "gpu_mem_percent": None,
         "disk_percent": None, "net_bytes_per_s": None}
    r.update(kw)
    return r


def _wire(doc: dict):
    """A document as the operator client hands it over: JSON decoded (and cleaned) once."""
    return decode_subscription(msgspec.json.encode(doc))


def snapshot(*rows, events=()):
    return _wire({"type": "snapshot", "ts": FROZEN, "machines": list(rows), "events": list(events)})


def update(*rows, removed=(), events=()):
    return _wire({"type": "update", "ts": FROZEN, "machines": list(rows), "removed": list(removed),
                  "events": list(events)})


@pytest.fixture
def clock():
    now = [FROZEN]
    return now


@pytest.fixture
def model(clock):
    return FleetModel(lambda: clock[0], resort_every=0)


def test_snapshot_then_updates_and_removals(model):
    model.apply(snapshot(row("b"), row("a"), row("c")))
    assert model.loaded and model.view() == ["a", "b", "c"]
    model.apply(update(row("d", cpu_percent=10.0), removed=["b"]))
    assert model.view() == ["a", "c", "d"]
    assert model.rows["d"].cpu == 10.0
    # A new snapshot (after a reconnect) replaces the rows but keeps history of those still there.
    model.apply(update(row("a", sample_ts="t1", cpu_percent=50.0)))
    model.apply(snapshot(row("a", sample_ts="t2", cpu_percent=60.0)))
    assert list(model.rows) == ["a"]
    assert model.rows["a"].cpu_spark == bytes([50, 60])


def test_sort_numbers_descending_first_missing_last_and_toggle(model):
    model.apply(snapshot(row("a", cpu_percent=10.0), row("b", cpu_percent=90.0), row("c"),
                         row("d", cpu_percent=50.0)))
    model.set_sort("cpu")
    assert (model.sort_key, model.sort_desc) == ("cpu", True)
    assert model.view() == ["b", "d", "a", "c"]
    model.set_sort("cpu")  # again: ascending, still missing last
    assert model.view() == ["a", "d", "b", "c"]
    model.set_sort("name", descending=True)
    assert model.view() == ["d", "c", "b", "a"]


def test_sort_follows_live_values(model):
    model.apply(snapshot(row("a", cpu_percent=10.0), row("b", cpu_percent=20.0)))
    model.set_sort("cpu")
    assert model.view() == ["b", "a"]
    model.apply(update(row("a", cpu_percent=99.0)))
    assert model.view() == ["a", "b"]


def test_moving_values_resort_at_most_once_a_second(clock):
    ticks = [100.0]
    model = FleetModel(lambda: clock[0], monotonic=lambda: ticks[0])
    model.apply(snapshot(row("a", cpu_percent=10.0), row("b", cpu_percent=20.0)))
    model.set_sort("cpu")
    assert model.view() == ["b", "a"]
    model.apply(update(row("a", cpu_percent=99.0)))
    assert model.view() == ["b", "a"]  # not yet: rows do not jump on every update
    ticks[0] += 1.0
    assert model.view() == ["a", "b"]
    model.apply(update(row("c", cpu_percent=50.0)))  # a new machine: at once
    assert model.view() == ["a", "c", "b"]


def test_sort_by_state_puts_trouble_first_and_by_heartbeat_age(model, clock):
    model.apply(snapshot(row("a"), row("b", "dead", heartbeat_age_s=900.0),
                         row("c", "limbo", heartbeat_age_s=30.0)))
    model.set_sort("state")
    assert model.view() == ["b", "c", "a"]
    model.set_sort("age")
    assert model.view() == ["b", "c", "a"]
    clock[0] += 60  # ages grow locally between updates
    assert model.rows["a"].age(clock[0]) == pytest.approx(60.5)


def test_filter_terms_fields_and_labels(model):
    model.apply(snapshot(row("gpu-01", gpu_count=8, labels={"pool": "train"}),
                         row("gpu-02", "limbo", gpu_count=8, labels={"pool": "eval"}),
                         row("cpu-01", labels={"pool": "eval"}, hostname="web-frontend")))
    model.set_filter("pool=eval")
    assert model.view() == ["cpu-01", "gpu-02"]
    model.set_filter("eval gpu")  # every word must match somewhere
    assert model.view() == ["gpu-02"]
    model.set_filter("state:limbo")
    assert model.view() == ["gpu-02"]
    model.set_filter("kind:gpu")
    assert model.view() == ["gpu-01", "gpu-02"]
    model.set_filter("frontend")  # hostname
    assert model.view() == ["cpu-01"]
    model.set_filter("label:pool=train")
    assert model.view() == ["gpu-01"]
    model.set_filter("")
    assert len(model.view()) == 3
    assert model.summary().shown == 3


def test_filter_reacts_to_state_changes(model):
    model.apply(snapshot(row("a"), row("b")))
    model.set_filter("state:limbo")
    assert model.view() == []
    model.apply(update(row("b", "limbo")))
    assert model.view() == ["b"]


def test_summary_counts(model):
    model.apply(snapshot(
        row("g1", gpu_count=8, cpu_count=100, cpu_percent=50.0, gpu_util_percent=100.0),
        row("g2", gpu_count=8, cpu_count=100, cpu_percent=10.0, gpu_util_percent=50.0),
        row("g3", "limbo", gpu_count=8, cpu_count=100, cpu_percent=None),
        row("c1", cpu_count=50, cpu_percent=20.0, drained=True),
        row("c2", "dead", unhealthy=True)))
    s = model.summary()
    assert (s.total, s.live, s.limbo, s.dead) == (5, 3, 1, 1)
    assert (s.gpu_machines, s.cpu_machines, s.gpus) == (3, 2, 24)
    assert s.gpu_util == pytest.approx(75.0)  # over the GPUs of live machines
    assert s.cpu_util == pytest.approx((50 * 100 + 10 * 100 + 20 * 50) / 250)
    assert (s.drained, s.unhealthy) == (1, 1)
    assert model.has_flags


def test_summary_follows_rows_filter_and_marks_and_sorting_does_not_recount_it(model):
    model.apply(snapshot(row("a", cpu_percent=10.0), row("b", cpu_percent=30.0), row("c", "limbo")))
    first = model.summary()
    assert (first.total, first.shown, first.live, first.limbo) == (3, 3, 2, 1)
    assert first.cpu_util == pytest.approx(20.0)
    model.set_sort("cpu")
    assert model.summary() is first  # same rows: the counts are not taken again
    model.set_filter("state:live")
    assert model.summary().shown == 2 and model.summary().live == 2
    model.toggle_mark("a")
    assert model.summary().shown == 2
    model.set_filter("")
    assert model.summary().shown == 3
    model.apply(update(row("b", cpu_percent=50.0), row("c", "dead")))
    s = model.summary()
    assert s.cpu_util == pytest.approx(30.0) and (s.limbo, s.dead) == (0, 1)
    model.apply(update(removed=["a"]))
    s = model.summary()
    assert (s.total, s.shown, s.live, s.cpu_util) == (2, 2, 1, 50.0)


def test_flags_come_with_every_row(model):
    model.apply(snapshot())
    assert not model.has_flags  # no row yet: no flags column
    model.apply(update(row("a")))
    assert model.has_flags and model.rows["a"].flags == ""
    model.apply(update(row("a", drained=True, unhealthy=False)))
    assert model.rows["a"].flags == "drained" and "drained" in model.rows["a"].search
    model.apply(update(row("a", drained=True, unhealthy=True)))
    assert model.rows["a"].flags == "drained unhealthy"
    model.apply(update(row("a")))
    assert model.rows["a"].flags == "" and "drained" not in model.rows["a"].search
    model.apply(update(row("a", metrics_held=True)))  # after a storm, until released
    assert model.rows["a"].flags == "metrics-held" and "metrics-held" in model.rows["a"].search
    model.apply(update(row("a")))
    assert model.rows["a"].flags == ""


def test_sparklines_are_bounded_and_advance_only_on_new_samples(model):
    model.apply(snapshot(row("a")))
    for i in range(SPARK_LEN + 10):
        model.apply(update(row("a", sample_ts=f"t{i}", cpu_percent=float(i))))
        model.apply(update(row("a", sample_ts=f"t{i}", cpu_percent=float(i))))  # same sample again
    spark = model.rows["a"].cpu_spark
    assert len(spark) == SPARK_LEN
    assert spark[-1] == SPARK_LEN + 9
    assert model.rows["a"].gpu_spark[-1] == fmt.MISSING


def test_agent_text_is_sanitised(model):
    model.apply(snapshot(row("a", hostname=EVIL_HOSTNAME, labels={"te\x1b[2Jam": "m\x9bl\x07"})))
    m = model.rows["a"]
    for text in (m.hostname, m.labels_text, m.search):
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert m.hostname == "cpu-02red"
    assert m.labels_text == "team=m"  # 8-bit CSI "\x9bl" is a whole sequence


@pytest.mark.parametrize("bad", [row("a", cpu_percent="lots"), {"no": "name"}, "junk",
                                 row("b", labels=["not", "a", "dict"]), row("c", drained={"reason": "x"})])
def test_malformed_rows_are_refused_when_decoded(bad):
    """What the control plane never sends does not decode (the client reports a protocol error)."""
    with pytest.raises(msgspec.ValidationError):
        snapshot(row("ok"), bad)


def test_odd_values_are_shown_as_missing(model):
    model.apply(snapshot(row("a", gpu_count=-3, heartbeat_age_s=float("nan"))))
    assert model.rows["a"].gpu_count == 0 and model.rows["a"].hb_age is None


def test_events_newest_first_deduplicated_and_filtered(model):
    e = lambda ts, kind, m: {"ts": ts, "kind": kind, "machine": m, "from": "live", "to": "limbo",  # noqa: E731
                             "reason": "connection closed", "actor": "system"}
    model.apply(snapshot(row("a"), events=[e("2027-01-15T07:00:02Z", "registered", "a"),
                                           e("2027-01-15T07:00:01Z", "registered", "b")]))
    model.apply(update(events=[e("2027-01-15T07:00:05Z", "disconnected", "a"),
                               e("2027-01-15T07:00:04Z", "heartbeat_missed", "b")]))
    model.events.merge([msgspec.convert(e("2027-01-15T07:00:05Z", "disconnected", "a"), Event),
                        msgspec.convert(e("2027-01-15T06:00:00Z", "old", "a"), Event)])
    kinds = [ev.kind for ev in model.events.items]
    assert kinds == ["disconnected", "heartbeat_missed", "registered", "registered", "old"]
    assert [ev.kind for ev in model.events.filtered("a")] != []
    assert [ev.kind for ev in model.events.filtered(machine="b")] == ["heartbeat_missed", "registered"]
    assert [ev.kind for ev in model.events.filtered("missed")] == ["heartbeat_missed"]


def test_formatting():
    assert fmt.rate(None) == "-" and fmt.rate(512) == "512 B/s"
    assert fmt.rate(3.5 * 1024) == "3.5 KiB/s" and fmt.rate(150 * 2**20) == "150 MiB/s"
    assert fmt.rate(1.5 * 2**30) == "1.5 GiB/s"
    assert fmt.age(0.42) == "0.4s" and fmt.age(42) == "42s" and fmt.age(600) == "10m" and fmt.age(7200) == "2h"
    assert fmt.spark(bytes([0, 50, 100, fmt.MISSING]), 6) == "  ▁▄█ "
    assert fmt.size(2 * 2**40) == "2.0 TiB"


def test_series_load_live_trim_and_charts():
    s = Series(600)
    rows = [{"ts": f"2027-01-15T07:{50 + i // 60:02d}:{i % 60:02d}.000Z", "cpu.percent": 10.0 + i % 5,
             "cpu[0].percent": 20.0, "cpu[1].percent": 30.0, "mem.percent": 40.0,
             "gpu[0].util_percent": 99.0, "gpu[0].mem_used_bytes": 2**30 * 70, "gpu[0].mem_total_bytes": 2**30 * 80,
             "net[eth0].recv_bytes_per_s": 2**20, "net[eth0].sent_bytes_per_s": 2**21,
             "cpu.percent:min": 1.0} for i in range(0, 600, 10)]
    s.load(rows)
    assert len(s) == 60 and "cpu.percent:min" not in s.columns
    assert s.add(FROZEN, {"cpu.percent": 77.0, "disk[nvme0n1].read_bytes_per_s": 5.0})
    assert not s.add(FROZEN - 1, {"cpu.percent": 1.0})  # older than the last: ignored
    assert s.columns["disk[nvme0n1].read_bytes_per_s"][:-1] == [None] * 60  # new key padded
    cs = {c.id: c for c in charts(s, FROZEN, buckets=60)}
    assert {"cpu", "cores", "mem", "gpu_util", "gpu_mem", "net", "disk_bytes"} <= set(cs)
    assert [line.label for line in cs["cores"].lines] == ["0", "1"]
    assert cs["gpu_mem"].lines[0].ys[0] == pytest.approx(70.0)  # GiB
    assert cs["gpu_mem"].ymax == pytest.approx(80.0)
    assert [line.label for line in cs["net"].lines] == ["eth0 recv", "eth0 sent"]
    assert cs["cpu"].lines[0].ys[-1] == pytest.approx((10.0 + 77.0) / 2)  # the last bucket holds both
    assert all(-600 <= x <= 0 for line in cs["cpu"].lines for x in line.xs)
    s.trim(FROZEN + 300)
    assert len(s) == 31


def test_many_cores_become_a_spread_and_many_disks_totals():
    s = Series(60)
    values = {f"cpu[{i}].percent": float(i) for i in range(112)}
    values.update({f"disk[nvme{i}n1].read_bytes_per_s": 2.0**20 for i in range(10)})
    s.add(FROZEN, values)
    cs = {c.id: c for c in charts(s, FROZEN)}
    assert [line.label for line in cs["cores"].lines] == ["max", "median", "min"]
    assert cs["cores"].lines[0].ys == [111.0]
    assert cs["disk_bytes"].lines[0].label == "read (all 10)"
    assert cs["disk_bytes"].lines[0].ys == [pytest.approx(10.0)]


def test_tick_labels():
    assert tick_labels(600) == ([-600, -480, -360, -240, -120, 0], ["-10m", "-8m", "-6m", "-4m", "-2m", "now"])
    assert tick_labels(86400)[1] == ["-24h", "-18h", "-12h", "-6h", "now"]
    assert tick_labels(153)[1] == ["-2m", "-1m", "now"]  # a span of the data there is: round steps, not -1.9m
    assert tick_labels(60, 2)[1] == ["-1m", "-30s", "now"]


async def test_feed_reconnects_with_backoff_and_reports_status():
    src = scenario(replay=0)
    model = FleetModel(lambda: FROZEN)
    states = []
    feed = Feed(src, model, backoff=Backoff(initial=0.02, maximum=0.05, rng=random.Random(1)),
                on_status=lambda s: states.append(s.state))
    task = asyncio.ensure_future(feed.run())
    try:
        for _ in range(200):
            if model.loaded:
                break
            await asyncio.sleep(0.01)
        assert feed.status.state == "connected" and len(model.rows) == 18
        src.disconnect("the link broke")  # and stays down: attempts fail
        for _ in range(200):
            if feed.status.attempt >= 2:
                break
            await asyncio.sleep(0.01)
        assert feed.status.state in ("lost", "connecting") and feed.status.reason == "the link broke"
        src.machines["cpu-01"].state = "limbo"
        src.reconnect()
        for _ in range(200):
            if feed.status.state == "connected":
                break
            await asyncio.sleep(0.01)
        assert feed.status.state == "connected" and feed.status.attempt == 0
        assert model.rows["cpu-01"].state == "limbo"  # the fresh snapshot was applied
        assert src.connects == 2
        assert states[:3] == ["connected", "lost", "connecting"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_feed_applies_big_updates_in_slices():
    class Source:
        label = "x"

        async def snapshots(self):
            yield snapshot(*(row(f"m{i:05d}") for i in range(2500)))
            yield update(*(row(f"m{i:05d}", cpu_percent=float(i % 100)) for i in range(2500)))
            raise SourceError("done")

    model = FleetModel(lambda: FROZEN)
    feed = Feed(Source(), model, backoff=Backoff(initial=5, maximum=5))
    task = asyncio.ensure_future(feed.run())
    for _ in range(100):
        if feed.status.state == "lost":
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(model.rows) == 2500 and model.rows["m02499"].cpu == 99.0 and model.rows["m00000"].cpu == 0.0
