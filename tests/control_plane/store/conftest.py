"""A fresh, migrated store on each backend ``store_url`` names."""

from __future__ import annotations

import pytest

from control_plane.store import Store


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def two_stores(postgres_db_url):
    """Two control planes' stores on one Postgres (SQLite has one control plane per file)."""
    a, b = Store(postgres_db_url), Store(postgres_db_url)
    a.migrate()
    yield a, b
    a.close()
    b.close()
