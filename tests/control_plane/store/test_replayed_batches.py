"""A metric batch that another control plane already stored is not stored again.

After a failover the agent replays what its old control plane did not
acknowledge; the new one's memory does not know what the old one stored, the
store does. Both control planes here are real Stores on one database.
"""

from __future__ import annotations

import threading

import pytest

from control_plane.store import Store
from control_plane.store.db import WriteBatch
from control_plane.writer import StoreWriter


def _stored_seqs(store: Store, machine_id: str) -> list[float]:
    import json

    ts = []
    for payload in store.metric_batches(machine_id, 0, 1e12):
        ts += json.loads(payload)["ts"]
    return sorted(ts)


def _batch(writer: StoreWriter, machine: str, stream: str, seq: int) -> None:
    import json

    payload = json.dumps({"ts": [float(seq)]}).encode()
    writer.add_metric_batch({"machine_id": machine, "ts_first": float(seq), "ts_last": float(seq),
                             "payload": payload}, {"machine_id": machine, "stream": stream, "seq": seq})


def _flush(writer: StoreWriter) -> None:
    batch, writer.pending = writer.pending, WriteBatch()
    writer.store.write(batch)


@pytest.mark.postgres
def test_a_batch_stored_by_one_control_plane_is_skipped_by_the_next(two_stores):
    a, b = two_stores
    wa, wb = StoreWriter(a), StoreWriter(b)
    for seq in (1, 2, 3):
        _batch(wa, "m1", "run1", seq)
    _flush(wa)
    # The agent never saw acks for 2 and 3: it replays them to b, then goes on.
    for seq in (2, 3, 4):
        _batch(wb, "m1", "run1", seq)
    _flush(wb)
    assert _stored_seqs(b, "m1") == [1.0, 2.0, 3.0, 4.0]
    assert b.batches_already_stored == 2
    assert b.load_cursors() == {"m1": ("run1", 4)}
    # A new run of the agent (a new stream) starts its sequence again: stored.
    _batch(wa, "m1", "run2", 1)
    _flush(wa)
    assert _stored_seqs(a, "m1") == [1.0, 1.0, 2.0, 3.0, 4.0] and a.load_cursors()["m1"] == ("run2", 1)


@pytest.mark.postgres
def test_two_control_planes_writing_the_same_replay_at_once_store_it_once(postgres_db_url):
    """Postgres: the cursor rows are locked, so the second writer waits and then skips."""
    a, b = Store(postgres_db_url), Store(postgres_db_url)
    a.migrate()
    try:
        wa = StoreWriter(a)
        _batch(wa, "m1", "run1", 1)
        _flush(wa)
        for round_ in range(20):
            seqs = (2 + 2 * round_, 3 + 2 * round_)
            writers = [StoreWriter(a), StoreWriter(b)]
            for w in writers:
                for seq in seqs:
                    _batch(w, "m1", "run1", seq)
            barrier = threading.Barrier(2)

            def go(w):
                barrier.wait()
                _flush(w)

            threads = [threading.Thread(target=go, args=(w,)) for w in writers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        stored = _stored_seqs(a, "m1")
        assert stored == [float(s) for s in range(1, 42)], "a batch stored twice, or lost"
        assert a.batches_already_stored + b.batches_already_stored == 40
    finally:
        a.close()
        b.close()
