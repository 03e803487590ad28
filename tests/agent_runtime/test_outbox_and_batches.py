"""The agent's batching and bounded buffer (pure, no sockets)."""

from __future__ import annotations

from agent_runtime.sampler import Outbox, Sampler, columnar
from centrality_core import protocol as p


def batch(seq: int, ts: list[float], stream: str = "s") -> p.MetricsBatch:
    return columnar(stream, seq, ts, [{"cpu.percent": float(i)} for i, _ in enumerate(ts)])


def test_columnar_batch_keeps_every_value_and_marks_gaps():
    b = columnar("run", 7, [1.0, 2.0, 3.0],
                 [{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"b": 4.0, "c": 5.0}])
    assert b.keys == ["a", "b", "c"]
    assert b.columns == [[1.0, 3.0, None], [2.0, None, 4.0], [None, None, 5.0]]
    assert b.check_shape() is None
    decoded = p.agent_decoder.decode(p.encode(b))
    assert decoded == b


def test_columnar_batch_of_rows_with_the_same_keys():
    b = columnar("run", 1, [1.0, 2.0], [{"a": 1.0, "b": None}, {"a": 3.0, "b": 4.0}])
    assert (b.keys, b.columns) == (["a", "b"], [[1.0, 3.0], [None, 4.0]])
    # Same keys in another order are still matched by name.
    b = columnar("run", 2, [1.0, 2.0], [{"a": 1.0, "b": 2.0}, {"b": 4.0, "a": 3.0}])
    assert (b.keys, b.columns) == (["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    assert columnar("run", 3, [1.0], [{}]).columns == []


def test_packed_batch_keeps_every_value_and_marks_gaps():
    rows = [{"a": 1.0, "b": None}, {"a": 3.0, "b": 4.0}]  # a collector without a value: None
    b = columnar("run", 1, [1.0, 2.0], rows, packed=True)
    assert b.columns == [] and b.check_shape() is None
    assert b.column_lists() == [[1.0, 3.0], [None, 4.0]]
    gaps = columnar("run", 2, [1.0, 2.0], [{"a": 1.0}, {"b": 2.0}], packed=True)  # keys came and went
    assert gaps.keys == ["a", "b"] and gaps.column_lists() == [[1.0, None], [None, 2.0]]


def test_sampler_hands_out_pending_samples_once():
    class C:
        def sample(self, now):
            return {"x": now * 2}, ({"nvidia_smi": "screen"} if now == 2 else {})

    s = Sampler(C(), 1.0, blocking=False)
    assert s.take_batch("r", 1) is None
    for t in (1.0, 2.0, 3.0):
        s.sample(t)
    b = s.take_batch("r", 1)
    assert (b.ts, b.keys, b.columns, b.text) == ([1.0, 2.0, 3.0], ["x"], [[2.0, 4.0, 6.0]], {"nvidia_smi": "screen"})
    assert s.take_batch("r", 2) is None


def test_outbox_ack_removes_only_acknowledged_batches_of_that_stream():
    o = Outbox(max_samples=100, max_age=1e9)
    for seq in (1, 2, 3):
        o.add(batch(seq, [float(seq)]), now=10)
    o.ack("other-run", 3)
    assert [b.seq for b in o] == [1, 2, 3]
    o.ack("s", 2)
    assert [b.seq for b in o] == [3] and o.samples == 1


def test_outbox_drops_oldest_past_the_sample_bound_and_reports_it():
    o = Outbox(max_samples=10, max_age=1e9)
    for seq in range(1, 5):
        o.add(batch(seq, [seq * 10.0 + i for i in range(4)]), now=100)  # 4 samples each
    assert [b.seq for b in o] == [3, 4] and o.samples == 8
    # Each drop is reported on the batch added when it happened (not yet sent).
    assert [b.dropped for b in o] == [4, 4]
    o.add(batch(5, [50.0, 51.0, 52.0, 53.0]), now=100)  # drops batch 3, which carried a count
    assert [b.seq for b in o] == [4, 5] and [b.dropped for b in o] == [4, 8]


def test_outbox_drops_samples_older_than_the_age_bound():
    o = Outbox(max_samples=1000, max_age=60)
    o.add(batch(1, [0.0, 1.0]), now=10)
    o.add(batch(2, [50.0]), now=50)
    o.add(batch(3, [100.0]), now=100)  # batch 1 is now older than 60 s
    assert [b.seq for b in o] == [2, 3]
    assert o.batches[-1].dropped == 2


def _sampler_batch(rows, packed):
    values = iter(rows)

    class C:
        def sample(self, now):
            return next(values), {}

    s = Sampler(C(), 1.0, blocking=False)
    for t in range(len(rows)):
        s.sample(float(t))
    return s.take_batch("r", 1, packed=packed), s


def test_sampler_batches_are_those_of_its_rows_whatever_keys_come_and_go():
    """The sampler keeps pending samples as packed rows while keys stay the same; what it hands
    out is the batch of its rows in every case: same keys, a None, keys that came or went."""
    cases = [
        [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}, {"a": 5.0, "b": 6.5}],
        [{"a": 1.0, "b": None}, {"a": None, "b": 4.0}],  # collectors without a value
        [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0, "disk[sdb].read_iops": 9.0}, {"a": 5.0}],  # a disk came, went
        [{"a": 1.0, "b": 2.0}, {"b": 4.0, "a": 3.0}],  # same keys, another order
        [{}, {}],
    ]
    for rows in cases:
        ts = [float(t) for t in range(len(rows))]
        for packed in (False, True):
            got, sampler = _sampler_batch(rows, packed)
            assert sampler.latest == rows[-1]  # what healthchecks read, a None included
            want = columnar("r", 1, ts, rows, packed=packed)
            assert (got.keys, got.ts) == (want.keys, want.ts), rows
            if packed and want.keys:
                assert got.columns == [] and got.column_lists() == want.column_lists(), rows
            else:
                assert got.columns == want.columns and got.values == b"", rows
            assert got.check_shape() is None


def test_sampler_goes_back_to_packed_rows_after_a_batch_whose_keys_changed():
    rows = [{"a": 1.0}, {"a": 2.0, "b": 3.0}, {"a": 4.0, "b": 5.0}, {"a": 6.0, "b": 7.0}]
    values = iter(rows)

    class C:
        def sample(self, now):
            return next(values), {}

    s = Sampler(C(), 1.0, blocking=False)
    s.sample(0.0)
    s.sample(1.0)
    first = s.take_batch("r", 1, packed=True)
    assert first.keys == ["a", "b"] and first.column_lists() == [[1.0, 2.0], [None, 3.0]]
    s.sample(2.0)
    s.sample(3.0)
    second = s.take_batch("r", 2, packed=True)
    assert second.keys == ["a", "b"] and second.column_lists() == [[4.0, 6.0], [5.0, 7.0]]
    assert s.latest == {"a": 6.0, "b": 7.0}


def test_the_newest_sample_is_read_right_before_during_and_after_a_batch():
    """``latest`` (what healthchecks read) points into the pending rows, and keeps its own copy
    of the row once they become a batch."""
    s = Sampler(None, 1.0, blocking=False)
    s.add(0.0, {"a": 1.0, "b": 2.0})
    s.add(1.0, {"a": 3.0, "b": None})
    assert s.latest == {"a": 3.0, "b": None}
    batch = s.take_batch("r", 1, packed=True)
    assert s.latest == {"a": 3.0, "b": None}
    s.add(2.0, {"a": 5.0, "b": 6.0})
    assert s.latest == {"a": 5.0, "b": 6.0}
    assert batch.column_lists() == [[1.0, 3.0], [2.0, None]]  # the batch is not changed by either


def packed(seq: int, ts: list[float], keys=("a", "b"), stream: str = "s", **extra) -> p.MetricsBatch:
    rows = [{k: (None if (i + j) % 3 == 0 else t * 10 + j) for j, k in enumerate(keys)} for i, t in enumerate(ts)]
    b = columnar(stream, seq, ts, rows, packed=True)
    for name, value in extra.items():
        setattr(b, name, value)
    return b


def samples(batches) -> dict[float, dict[str, float | None]]:
    """Every sample of ``batches`` as time -> {key: value}, however they are grouped."""
    out: dict[float, dict] = {}
    for b in batches:
        for i, t in enumerate(b.ts):
            assert t not in out, f"sample {t} twice"
            out[t] = {k: col[i] for k, col in zip(b.keys, b.column_lists())}
    return out


def test_batches_never_sent_are_merged_into_one_that_holds_every_sample_exactly():
    o = Outbox(max_samples=1000, max_age=1e9)
    procs = p.GpuProcesses(ts=3.0)
    made = [packed(1, [1.0, 2.0], text={"nvidia_smi": "old"}, dropped=2),
            packed(2, [3.0], gpu_processes=procs),
            packed(3, [4.0, 5.0, 6.0], text={"nvidia_smi": "new"}, dropped=1)]
    for b in made:
        o.add(b, now=10)
    assert o.merge_unsent() == 2
    [merged] = list(o)
    assert merged.check_shape() is None
    assert (merged.seq, merged.ts, merged.text, merged.dropped) == (3, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                                                                    {"nvidia_smi": "new"}, 3)
    assert merged.gpu_processes == procs
    assert samples([merged]) == samples(made)
    assert p.agent_decoder.decode(p.encode(merged)) == merged
    o.ack("s", 3)  # the control plane's cursor moves past all three at once
    assert (len(o), o.samples, o.acked_samples) == (0, 0, 6)


def test_a_batch_that_went_out_is_never_merged_so_it_cannot_be_stored_twice():
    o = Outbox(max_samples=1000, max_age=1e9)
    for seq in (1, 2, 3, 4):
        o.add(packed(seq, [float(seq)]), now=10)
    o.mark_sent(o.batches[1])  # 1 and 2 went out; the control plane may hold them unacknowledged
    o.merge_unsent()
    assert [(b.seq, b.ts) for b in o] == [(1, [1.0]), (2, [2.0]), (4, [3.0, 4.0])]
    o.mark_sent(o.batches[-1])
    o.add(packed(5, [5.0]), now=10)
    o.merge_unsent()  # the merged batch went out too: it stays as it was sent
    assert [b.seq for b in o] == [1, 2, 4, 5]


def test_merging_stops_at_a_change_of_keys_and_at_its_bounds():
    o = Outbox(max_samples=1000, max_age=1e9)
    made = [packed(1, [1.0]), packed(2, [2.0]), packed(3, [3.0], keys=("a", "b", "c")),
            packed(4, [4.0], keys=("a", "b", "c")), packed(5, [5.0, 6.0, 7.0]), packed(6, [8.0, 9.0]),
            packed(7, [10.0, 11.0])]
    for b in made:
        o.add(b, now=10)
    o.merge_unsent(max_samples=4)
    assert [(b.seq, len(b.ts)) for b in o] == [(2, 2), (4, 2), (5, 3), (7, 4)]
    assert samples(o) == samples(made)
    o = Outbox(max_samples=1000, max_age=1e9)
    for b in made[4:]:
        o.add(b, now=10)
    o.merge_unsent(max_bytes=8 * 2 * 5)  # two keys: five samples of values at most
    assert [(b.seq, len(b.ts)) for b in o] == [(6, 5), (7, 2)]


def test_batches_without_keys_and_unpacked_ones_merge_or_stay_as_they_are():
    o = Outbox(max_samples=1000, max_age=1e9)
    for seq in (1, 2):
        o.add(p.MetricsBatch(stream="s", seq=seq, ts=[float(seq)], keys=[], columns=[]), now=10)
    o.add(batch(3, [3.0], stream="s"), now=10)  # JSON columns (made for a 1.0 peer): left alone
    o.merge_unsent()
    assert [(b.seq, b.ts) for b in o] == [(2, [1.0, 2.0]), (3, [3.0])]
