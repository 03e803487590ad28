"""Postgres: the store's own driver paths (binary COPY of staged batches and chunks,
payloads read in binary) fail as every other statement does: a ``StoreError``
the writer retries with its batch kept, and a lost connection is not reused."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from centrality_core.errors import StoreError
from control_plane.store import Store, staged
from control_plane.store.db import WriteBatch
from tests.fixtures.postgres import libpq_url

pytestmark = pytest.mark.postgres


def batch(machine_id: str, ts: float) -> WriteBatch:
    b = WriteBatch()
    b.metric_batches = [{"machine_id": machine_id, "ts_first": ts, "ts_last": ts + 4,
                         "payload": staged.encode([ts + i for i in range(5)], ["cpu.percent"], np.ones((1, 5)))}]
    return b


@pytest.fixture
def store(postgres_db_url):
    s = Store(postgres_db_url)
    s.migrate()
    yield s
    s.close()


def test_a_refused_copy_is_a_store_error_and_writes_nothing(store):
    with pytest.raises(StoreError, match="store unavailable"):
        store.write(batch("x" * 40, 1e9))  # longer than the column
    assert store.metric_batches("x" * 40, 0, 2e9) == []


def test_a_connection_lost_under_the_copy_is_a_store_error_and_the_next_write_lands(store, postgres_db_url):
    def kill(dbapi_conn, *_):
        with psycopg.connect(libpq_url(postgres_db_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (dbapi_conn.info.backend_pid,))

    sa.event.listen(store.engine, "checkout", kill)
    try:
        with pytest.raises(StoreError):
            store.write(batch("m1", 1e9))
    finally:
        sa.event.remove(store.engine, "checkout", kill)
    store.write(batch("m1", 1e9))
    got = store.metric_batches("m1", 0, 2e9)
    assert len(got) == 1 and staged.decode(got[0]).ts.tolist() == [1e9 + i for i in range(5)]
