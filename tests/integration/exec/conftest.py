"""Fixtures for the command tests: a control plane whose settings a test may change.

``cp_settings`` (default: none) is merged into the control plane's settings;
override it with ``@pytest.mark.parametrize("cp_settings", [{...}], indirect=True)``
or a module-level fixture. ``store_url`` is SQLite here; tests that must also run on
Postgres parametrize it with ``BOTH_STORES``.
"""

from __future__ import annotations

import pytest

from tests.conftest import FAST

BOTH_STORES = pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture
def store_url(request, tmp_path) -> str:
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_db_url")


@pytest.fixture
def cp_settings(request) -> dict:
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def control_plane(home, store_url, cp_settings):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": store_url, **FAST, **cp_settings}))
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()
