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
