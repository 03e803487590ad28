"""The metric ingest rules, built from the ingest part alone (no sockets, no database):
dedupe by cursor, the time window, infinities and NaN, the key budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from centrality_core import protocol as p
from control_plane import history
from control_plane.ingest import KEY_WINDOW_S, Ingest
from control_plane.store import Store, staged
from control_plane.writer import StoreWriter

NOW = 1_700_000_000.0


class Agent:
    """The session a batch came on: what the ingest sends back to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send_bytes(self, frame: bytes) -> None:
        self.frames.append(frame)

    @property
    def acks(self) -> list[p.MetricsAck]:
        return [p.server_decoder.decode(f) for f in self.frames]


class Parts:
    def __init__(self, tmp_path, **limits) -> None:
        self.clock = NOW
        self.samples: list[str] = []
        self.events = []
        # The real writer, never flushed: what it holds is what would be stored.
        self.writer = StoreWriter(Store(f"sqlite:///{tmp_path}/unused.db"))
        self.ingest = Ingest(self.writer, on_sample=self.samples.append, record_event=self.events.append,
                             max_keys_per_batch=limits.get("per_batch", 4096),
                             max_keys_per_machine=limits.get("per_machine", 8192), clock=lambda: self.clock)
        self.agent = Agent()

    def send(self, batch: p.MetricsBatch, name: str = "gpu-01", machine_id: str = "m1") -> str | None:
        return self.ingest.received(self.agent, name, machine_id, batch, p.encode(batch))

    def stored(self) -> list[dict]:
        """What the writer would store now; runs what waits on that write (the acks)."""
        pending = self.writer.pending
        rows = list(pending.metric_batches)
        pending.metric_batches.clear()
        callbacks, pending.callbacks = pending.callbacks, []
        for cb in callbacks:
            cb()
        return rows


def batch(seq: int, *, ts=(NOW - 1,), keys=("cpu.percent",), values=None, stream="run-a") -> p.MetricsBatch:
    columns = [[v for v in (values or [10.0 + seq] * len(ts))] for _ in keys]
    return p.MetricsBatch(stream=stream, seq=seq, ts=list(ts), keys=list(keys), columns=columns)


@pytest.fixture
def parts(tmp_path):
    return Parts(tmp_path)


def test_a_batch_is_kept_latest_queued_and_acknowledged_only_once_stored(parts):
    assert parts.send(batch(1)) is None
    assert parts.ingest.latest["gpu-01"].values == {"cpu.percent": 11.0}
    assert parts.samples == ["gpu-01"]
    assert parts.agent.frames == []  # nothing acknowledged before the write
    (row,) = parts.stored()
    assert row["machine_id"] == "m1" and row["ts_first"] == row["ts_last"] == NOW - 1
    assert [(a.stream, a.seq, a.refused, a.too_old) for a in parts.agent.acks] == [("run-a", 1, "", 0)]
    assert parts.writer.pending.cursors["m1"] == {"machine_id": "m1", "stream": "run-a", "seq": 1}
    assert parts.ingest.samples_stored == 1


def test_a_replayed_batch_is_acknowledged_again_and_not_stored_twice(parts):
    parts.send(batch(1))
    parts.send(batch(2))
    parts.stored()
    parts.agent.frames.clear()
    for seq in (1, 2):  # the agent reconnected and replays what it had not seen acknowledged
        assert parts.send(batch(seq)) is None
    assert parts.stored() == []
    assert [a.seq for a in parts.agent.acks] == [1, 2]
    assert parts.ingest.duplicates == 2 and parts.ingest.samples_stored == 2
    parts.send(batch(1, stream="run-b"))  # a new run of the agent starts its own count
    assert len(parts.stored()) == 1


def test_the_cursor_loaded_at_start_drops_what_was_stored_before_a_restart(parts):
    parts.ingest.load({"m1": ("run-a", 5)})
    parts.send(batch(5))
    parts.send(batch(6))
    assert [r["ts_first"] for r in parts.stored()] == [NOW - 1]
    assert parts.ingest.duplicates == 1


@pytest.mark.parametrize("ts, kept", [
    ((NOW - 7 * 86400 + 60,), True),   # a week back, just inside
    ((NOW - 7 * 86400 - 60,), False),  # older than a week
    ((NOW + 299,), True),              # the agent's clock a little ahead
    ((NOW + 301,), False),             # more than five minutes ahead
    ((NOW - 10, NOW + 3600), False),   # one bad sample: the whole batch
])
def test_samples_outside_the_window_are_acknowledged_and_not_stored(parts, ts, kept):
    assert parts.send(batch(1, ts=ts)) is None
    assert bool(parts.stored()) is kept
    (ack,) = parts.agent.acks
    assert ack.too_old == (0 if kept else len(ts)) and ack.refused == ""
    assert parts.writer.pending.cursors["m1"]["seq"] == 1  # the cursor moves either way: no resend
    assert ("gpu-01" in parts.ingest.latest) is kept


def test_infinite_values_or_times_are_a_protocol_error_and_leave_the_cursor(parts):
    assert "values must be finite" in parts.send(batch(1, values=[math.inf]))
    packed = p.MetricsBatch(stream="run-a", seq=1, ts=[NOW - 1], keys=["cpu.percent"],
                            values=np.array([-math.inf]).astype("<f8").tobytes())
    assert "values must be finite" in parts.send(packed)
    assert "timestamps must be finite" in parts.send(batch(1, ts=(math.nan,)))
    assert parts.stored() == [] and parts.agent.frames == [] and not parts.writer.pending.cursors
    assert parts.send(batch(1)) is None  # the same batch, fixed, is taken: the cursor did not move
    assert len(parts.stored()) == 1


def test_nan_is_no_value_not_an_error(parts):
    assert parts.send(batch(1, keys=("cpu.percent", "mem.percent"), values=[math.nan])) is None
    assert parts.ingest.latest["gpu-01"].values == {}
    assert len(parts.stored()) == 1


def test_a_batch_over_the_per_batch_key_budget_is_refused_with_one_event(tmp_path):
    parts = Parts(tmp_path, per_batch=3)
    keys = tuple(f"cpu[{i}].percent" for i in range(4))
    assert parts.send(batch(1, keys=keys)) is None
    assert parts.stored() == []
    (ack,) = parts.agent.acks
    assert "4 metric keys in one batch" in ack.refused and "max_keys_per_batch" in ack.refused
    parts.clock += 60
    parts.send(batch(2, keys=keys))
    (event,) = parts.events  # one event an hour, not one a batch
    assert event.kind == "metrics_refused" and event.name == "gpu-01" and event.actor == "system"
    assert parts.ingest.batches_refused == 2 and parts.ingest.refusing(NOW - 1) == 1
    parts.clock += KEY_WINDOW_S
    parts.send(batch(3, keys=keys))
    assert len(parts.events) == 2


def test_distinct_keys_per_machine_are_counted_over_the_window(tmp_path):
    parts = Parts(tmp_path, per_machine=4)
    assert parts.send(batch(1, keys=("a.x", "a.y"))) is None
    parts.send(batch(2, keys=("b.x", "b.y")))   # 4 distinct keys: at the budget
    assert len(parts.stored()) == 2
    parts.send(batch(3, keys=("c.x",)))        # a fifth: refused
    assert parts.stored() == [] and "5 distinct metric keys" in parts.agent.acks[-1].refused
    parts.send(batch(4, keys=("a.x", "a.y")))  # keys already counted are fine
    assert len(parts.stored()) == 1
    parts.clock += KEY_WINDOW_S                # a new window: counted afresh
    parts.send(batch(5, keys=("c.x",)))
    assert len(parts.stored()) == 1


def test_an_unsafe_key_is_refused_and_never_becomes_latest(parts):
    parts.send(batch(1, keys=("cpu.percent\x1b[2J",)))
    assert parts.stored() == [] and "control or bidi characters" in parts.agent.acks[0].refused
    assert "gpu-01" not in parts.ingest.latest


def test_rollups_of_closed_minutes_are_queued(parts):
    parts.send(batch(1, ts=(NOW - 120,)))
    assert parts.ingest.flush_rollups(NOW) == 1
    (row,) = parts.writer.pending.rollups
    assert row["machine_id"] == "m1"


@pytest.mark.parametrize("packed", [True, False])
def test_a_batch_is_stored_staged_with_its_values_and_text_as_sent(parts, packed):
    keys, columns = ["cpu.percent", "mem.used_bytes"], [[12.5, None], [1024.0, 2048.0]]
    sent = p.MetricsBatch(stream="run-a", seq=1, ts=[NOW - 2, NOW - 1], keys=keys, text={"nvidia_smi": "ok"},
                          **({"values": p.pack_values(columns)} if packed else {"columns": columns}))
    assert parts.send(sent) is None
    (row,) = parts.stored()
    stored = history.batch_arrays(row["payload"])
    assert staged.is_staged(row["payload"])
    assert stored.ts.tolist() == [NOW - 2, NOW - 1] and stored.keys == keys and stored.text == {"nvidia_smi": "ok"}
    assert [[None if v != v else v for v in r] for r in stored.values.tolist()] == columns
