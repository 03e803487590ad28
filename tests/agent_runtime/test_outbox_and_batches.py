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
