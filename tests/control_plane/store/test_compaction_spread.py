"""The raw tier's compaction spread over the window: every machine's window closes on the
same boundary, and each pass compacts only its share of the fleet, carrying on from where
the last one stopped, on SQLite and a real Postgres."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from centrality_core.settings import ServerSettings
from control_plane import history
from control_plane.compactor import RAW_MIN_PER_PASS, Compactor
from control_plane.store import staged
from control_plane.store.chunks import Chunks
from control_plane.store.db import WriteBatch
from control_plane.writer import StoreWriter

T0 = 1_799_971_200.0  # a UTC day boundary
WINDOW = 600.0
MACHINES = 400


def write_window(store, start: float) -> None:
    """One batch of 5 samples per machine, in the window that begins at ``start``."""
    b = WriteBatch()
    ts = [start + 10 + i for i in range(5)]
    for i in range(MACHINES):
        values = np.array([[float(i)] * 5])
        b.metric_batches.append({"machine_id": f"m{i:04d}", "ts_first": ts[0], "ts_last": ts[-1],
                                 "payload": staged.encode(ts, ["cpu.percent"], values)})
    store.write(b)


@pytest.fixture
def compactor(store, clock):
    clock.now = T0 + WINDOW + 120
    settings = ServerSettings(chunk_seconds=WINDOW, compact_interval=60.0)  # 5 passes per half window
    return Compactor(Chunks(store), StoreWriter(store), settings, clock=clock, fleet_size=lambda: MACHINES)


def raw_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM metric_batches")).scalar()


async def test_a_closed_window_is_compacted_over_several_passes(store, compactor):
    write_window(store, T0)
    budget = compactor.raw_budget()
    assert budget == MACHINES // 5 and budget > RAW_MIN_PER_PASS
    left = [MACHINES]
    for _ in range(5):
        await compactor.run_once()
        left.append(raw_rows(store))
    assert left == [400, 320, 240, 160, 80, 0]  # each pass its share, none twice
    await compactor.run_once()
    assert raw_rows(store) == 0 and compactor.raw_after == ""
    # Every machine reads its five samples, compacted by whichever pass.
    for i in (0, 199, 399):
        rows = history.as_dicts(history.query(store, compactor.chunks, f"m{i:04d}", T0, T0 + WINDOW, None, "raw"))
        assert [r["cpu.percent"] for r in rows] == [float(i)] * 5


async def test_the_next_window_starts_a_new_round_from_the_first_machine(store, compactor, clock):
    write_window(store, T0)
    await compactor.run_once()  # m0000-m0079
    write_window(store, T0 + WINDOW)
    clock.now += WINDOW  # the second window closed too, mid-round
    for _ in range(4):
        await compactor.run_once()  # the rest of the round: both windows of m0080-m0399
    assert raw_rows(store) == 80  # m0000-m0079's second window waits for the next round
    await compactor.run_once()
    assert raw_rows(store) == 0


async def test_a_fleet_the_registry_does_not_know_is_measured_by_its_rounds(store, compactor):
    compactor.fleet_size = lambda: 0  # e.g. machines forgotten while their history stays
    write_window(store, T0)
    assert compactor.raw_budget() == RAW_MIN_PER_PASS
    passes = 0
    while raw_rows(store):
        await compactor.run_once()
        passes += 1
    assert passes == -(-MACHINES // RAW_MIN_PER_PASS) and compactor.raw_after == ""  # the round ended
    assert compactor.raw_round_max == MACHINES and compactor.raw_budget() == MACHINES // 5
