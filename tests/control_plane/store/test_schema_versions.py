"""One store, several versions: a store migrated past what a control plane knows
is refused with a clear error (not a traceback, not a failure on rows it cannot
read), and a downgrade hands history back in the form earlier versions read."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from centrality_core.errors import StoreError, UsageError
from control_plane.store import Store, exclusive, staged
from control_plane.store.chunks import Chunks
from tests.conftest import REPO
from tests.control_plane.store.test_chunks import T0, fill, query
from tests.control_plane.store.test_history_migration import MIGRATIONS

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def set_revision(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def payloads(store: Store, table: str) -> list[bytes]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT payload FROM {table}")).scalars())


def test_a_store_migrated_by_a_newer_version_is_refused_by_name(store):
    set_revision(store, "0099")
    with pytest.raises(StoreError) as err:
        store.migrate()
    assert err.value.code == "store_too_new"
    assert "newer centrality" in err.value.reason and "0099" in err.value.reason
    assert f"knows up to {HEAD}" in err.value.reason
    assert store.schema_revision() == "0099"  # left as it was


def test_an_unknown_target_revision_is_a_usage_error(store):
    with pytest.raises(UsageError, match="unknown schema revision 'latest'"):
        store.migrate("latest")
    assert store.schema_revision() == HEAD


def test_a_downgrade_rewrites_staged_history_as_earlier_versions_read_it(store):
    """0007 -> 0006: staged batches become JSON frames (``columns``, null for no
    value), staged minutes JSON dicts; the series a user sees is the same before,
    after the downgrade and after upgrading again."""
    fill(store, "m1", T0, 600, profile="gpu8", gap=(T0 + 102, T0 + 104))
    chunks = Chunks(store)
    until = T0 + 600
    before = {res: query(store, chunks, "m1", T0, until, None, res) for res in ("raw", "1m")}
    assert all(staged.is_staged(x) for x in payloads(store, "metric_batches"))
    assert all(staged.is_staged_minute(x) for x in payloads(store, "metric_rollups"))

    assert store.migrate("0006") == "0007"
    assert store.schema_revision() == "0006"
    batches = [msgspec.json.decode(x) for x in payloads(store, "metric_batches")]
    minutes = [msgspec.json.decode(x) for x in payloads(store, "metric_rollups")]
    assert len(batches) == 120 and len(minutes) == 10
    assert all(set(b) == {"ts", "keys", "columns", "text"} and len(b["columns"]) == len(b["keys"]) for b in batches)
    gapped = next(b for b in batches if b["ts"][0] == T0 + 100.25)
    cpu = gapped["columns"][gapped["keys"].index("cpu.percent")]  # no value at 102.25 and 103.25
    assert cpu[2:4] == [None, None] and None not in (cpu[0], cpu[1], cpu[4])
    assert any(b["text"].get("nvidia_smi", "").startswith("screen") for b in batches)
    assert all(isinstance(s, list) and len(s) == 4 for m in minutes for s in m.values())
    assert {res: query(store, chunks, "m1", T0, until, None, res) for res in ("raw", "1m")} == before

    assert store.migrate() == "0006"
    assert store.schema_revision() == HEAD
    assert {res: query(store, chunks, "m1", T0, until, None, res) for res in ("raw", "1m")} == before
    while chunks.compact_raw(until + 3600)["chunks"]:
        pass
    assert query(store, chunks, "m1", T0, until, None, "raw") == before["raw"]


def centrality(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "centrality_cli", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def test_the_server_refuses_a_newer_store_with_one_line_and_migrate_to_hands_it_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    store.migrate()
    set_revision(store, "0099")
    r = centrality("server", "--db", url, "--listen", "127.0.0.1:0", home=tmp_path)
    assert r.returncode == 11, r.stderr
    assert "newer centrality (schema revision 0099" in r.stderr and "Traceback" not in r.stderr

    set_revision(store, "0007")
    r = centrality("server", "--db", url, "--migrate-to", "0006", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "schema 0007 -> 0006" in r.stderr and store.schema_revision() == "0006"
    # Not while a control plane holds the store.
    lock = exclusive.claim(url)
    try:
        r = centrality("server", "--db", url, "--migrate-to", "head", home=tmp_path)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert store.schema_revision() == "0006"
    finally:
        lock.release()
    r = centrality("server", "--db", url, "--migrate-to", "head", home=tmp_path)
    assert r.returncode == 0 and "schema 0006 -> 0007" in r.stderr
    store.close()
