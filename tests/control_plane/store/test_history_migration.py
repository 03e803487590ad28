"""Upgrading a store that holds history in the old layout (revision 0003) keeps every sample."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from control_plane import history
from control_plane.store import Store, tsz
from control_plane.store.chunks import Chunks
from tests.control_plane.store.test_chunks import T0, count, query

MIGRATIONS = Path(history.__file__).parent / "store" / "migrations"
KEYS = ["cpu.percent", "mem.used_bytes", "gpu[0].power_w"]


def upgrade(store: Store, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def old_history(store: Store) -> tuple[list, list]:
    """Raw batches as versions before 0004 stored them (JSON columns, and packed values),
    and JSON minutes, written straight into the old tables."""
    rng = np.random.default_rng(3)
    batches, minutes = [], []
    for seq in range(24):  # two minutes of 5-sample batches
        ts = [T0 + 5 * seq + i + 0.5 for i in range(5)]
        cols = [rng.uniform(0, 100, 5).tolist(), rng.uniform(1e9, 2e9, 5).tolist(), rng.uniform(50, 700, 5).tolist()]
        cols[0][2] = None  # a missing value
        if seq % 2:
            frame = {"kind": "metrics", "stream": "s", "seq": seq + 1, "ts": ts, "keys": KEYS,
                     "values": base64.b64encode(np.array(
                         [[np.nan if v is None else v for v in c] for c in cols]).tobytes()).decode()}
        else:
            frame = {"ts": ts, "keys": KEYS, "columns": cols}  # the oldest form
        batches.append((ts, cols))
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO metric_batches (machine_id, ts_first, ts_last, payload) "
                                 "VALUES ('m1', :a, :b, :p)"), {"a": ts[0], "b": ts[-1], "p": msgspec.json.encode(frame)})
    for i in range(90):
        stats = {"cpu.percent": [1.5, 90.25, 2400.5, 60], "mem.used_bytes": [1e9, 2e9, 9e10, 60]}
        minutes.append((T0 - 3 * 3600 + 60 * i, stats))
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO metric_rollups (machine_id, minute, payload) VALUES ('m1', :m, :p)"),
                         {"m": T0 - 3 * 3600 + 60 * i, "p": msgspec.json.encode(stats)})
    return batches, minutes


def test_migration_keeps_old_history_readable_and_compactable(store_url):
    store = Store(store_url)
    upgrade(store, "0003")
    batches, minutes = old_history(store)
    store.migrate()  # 0003 -> head
    chunks = Chunks(store)
    now = T0 + 3 * 3600

    def raw():
        return query(store, chunks, "m1", T0, now, None, "raw")

    def rollups():
        return query(store, chunks, "m1", T0 - 4 * 3600, now, None, "1m")

    before_raw, before_1m = raw(), rollups()
    while chunks.compact_raw(now)["chunks"] or chunks.compact_minutes(now)["chunks"]:
        pass
    assert count(store, "metric_batches") == 0 and count(store, "metric_rollups") == 0
    assert count(store, "metric_chunks", tier=0) == 1 and count(store, "metric_chunks", tier=1) == 2
    assert raw() == before_raw and rollups() == before_1m

    # every old sample is there once, at its key's precision
    expected = []
    for ts, cols in batches:
        q = tsz.quantize(KEYS, np.array([[np.nan if v is None else v for v in c] for c in cols]))
        for i, t in enumerate(ts):
            expected.append({k: q[j, i] for j, k in enumerate(KEYS) if q[j, i] == q[j, i]})
    assert [{k: v for k, v in r.items() if k != "ts"} for r in raw()] == expected
    assert len(rollups()) == len(minutes)
    assert rollups()[0]["cpu.percent:max"] == 90.2  # 90.25 at 0.1 %, half to even
    store.close()
