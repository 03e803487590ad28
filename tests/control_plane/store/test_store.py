"""The Store on both backends: every test runs on SQLite and on a real Postgres."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from centrality_core.errors import Conflict, NotFound, StoreError
from control_plane.store import Store
from control_plane.store.db import WriteBatch

TABLES = {"machines", "events", "keys", "join_tokens", "meta"}


def machine_row(name: str, *, id: str | None = None, state: str = "live", t: float = 1000.0,
                **over) -> dict:
    row = {
        "id": id or uuid.uuid4().hex,
        "name": name,
        "state": state,
        "identity": [name, "mid", "AMD EPYC 7763", 128, 515000, [["NVIDIA A100", 81920]]],
        "info": {"hostname": name, "cpu_count": 128, "gpus": [{"index": 0, "name": "NVIDIA A100"}]},
        "labels": {"rack": "b12"},
        "key_fingerprint": "SHA256:abc",
        "registered_at": t,
        "last_heartbeat": t,
        "state_since": t,
        # operator flags (migration 0003), as the registry writes them
        "drained": False, "drain_reason": "", "drained_by": "", "drained_at": None, "auto_drained": False,
        "unhealthy": False, "health": [], "health_at": None, "operator_labels": {},
    }
    row.update(over)
    return row


def event_row(kind: str, name: str, ts: float, *, machine_id: str = "m", from_state=None,
              to_state=None, reason: str = "", actor: str = "system") -> dict:
    return {"ts": ts, "kind": kind, "machine_id": machine_id, "machine_name": name,
            "from_state": from_state, "to_state": to_state, "reason": reason, "actor": actor}


def _write(store, *, upserts=(), deletes=(), events=()):
    b = WriteBatch()
    for mid in deletes:
        b.delete(mid)
    for r in upserts:
        b.upsert(r)
    b.events.extend(events)
    store.write(b)


def _by_name(store) -> dict[str, dict]:
    return {r["name"]: r for r in store.load_machines()}


# ---------------------------------------------------------------- schema


def _head_revision() -> str:
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import control_plane.store.db as db

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrate_creates_tables_and_is_idempotent(store_url):
    s = Store(store_url)
    try:
        s.migrate()
        names = set(sa.inspect(s.engine).get_table_names())
        assert TABLES <= names
        assert "alembic_version" in names
        with s.engine.connect() as conn:
            version = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
        assert version == _head_revision()
        s.set_meta("created_at", "123")
        s.migrate()  # again: no-op, data kept
        assert set(sa.inspect(s.engine).get_table_names()) == names
        assert s.get_meta("created_at") == "123"
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from alembic_version")).scalar_one() == 1
    finally:
        s.close()


def test_migrated_schema_has_unique_machine_names_and_key_fingerprints(store):
    insp = sa.inspect(store.engine)
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("machines")}
    uniques |= {tuple(i["column_names"]) for i in insp.get_indexes("machines") if i["unique"]}
    assert ("name",) in uniques
    _write(store, upserts=[machine_row("gpu1", id="a" * 32)])
    with pytest.raises(sa.exc.IntegrityError):  # the database itself refuses a second gpu1
        with store.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into machines (id, name, state, identity, info, labels, key_fingerprint,"
                " registered_at, last_heartbeat, state_since) values"
                " ('bbbb', 'gpu1', 'live', '[]', '{}', '{}', '', 0, 0, 0)"))
    assert [r["id"] for r in store.load_machines()] == ["a" * 32]


def test_repr_hides_password():
    s = Store("postgresql+psycopg://centrality:s3cretpw@127.0.0.1:1/db")
    try:
        assert "s3cretpw" not in repr(s)
        assert "127.0.0.1" in repr(s)
        assert s.describe() == "PostgreSQL centrality:***@127.0.0.1:1/db"  # the server's banner
    finally:
        s.close()


# ---------------------------------------------------------------- machines


def test_fresh_store_is_empty(store):
    assert store.load_machines() == []
    assert store.events() == []
    assert store.list_keys() == [] and store.list_tokens() == []
    assert store.get_meta("anything") is None
    store.write(WriteBatch())  # an empty batch is fine


def test_upsert_inserts_then_updates(store):
    a = machine_row("gpu1", id="a" * 32)
    b = machine_row("gpu2", id="b" * 32)
    _write(store, upserts=[a, b])
    rows = _by_name(store)
    assert set(rows) == {"gpu1", "gpu2"}
    assert rows["gpu1"] == a  # every column, JSON included, comes back as written
    _write(store, upserts=[{**a, "state": "limbo", "last_heartbeat": 1010.5, "state_since": 1011.0,
                            "labels": {"rack": "c3", "team": "vision"}}])
    rows = _by_name(store)
    assert rows["gpu1"]["state"] == "limbo"
    assert rows["gpu1"]["last_heartbeat"] == 1010.5 and rows["gpu1"]["state_since"] == 1011.0
    assert rows["gpu1"]["labels"] == {"rack": "c3", "team": "vision"}
    assert rows["gpu1"]["registered_at"] == 1000.0
    assert rows["gpu2"] == b
    assert len(store.load_machines()) == 2


def test_batch_coalesces_upserts_last_wins(store):
    b = WriteBatch()
    row = machine_row("gpu1", id="a" * 32)
    b.upsert(row)
    b.upsert({**row, "state": "limbo"})
    b.upsert({**row, "state": "dead", "state_since": 2000.0})
    assert len(b) == 1
    store.write(b)
    (only,) = store.load_machines()
    assert only["state"] == "dead" and only["state_since"] == 2000.0


def test_delete_after_upsert_in_one_batch(store):
    keep = machine_row("keep")
    gone = machine_row("gone", id="d" * 32)
    _write(store, upserts=[keep, gone])
    b = WriteBatch()
    b.upsert({**gone, "state": "dead"})
    b.delete(gone["id"])
    assert len(b) == 1 and not b.upserts
    b.upsert({**keep, "state": "limbo"})
    store.write(b)
    rows = _by_name(store)
    assert set(rows) == {"keep"} and rows["keep"]["state"] == "limbo"


def test_upsert_after_delete_in_one_batch_keeps_the_row(store):
    row = machine_row("gpu1", id="a" * 32)
    b = WriteBatch()
    b.delete(row["id"])
    b.upsert(row)
    assert not b.deletes
    store.write(b)
    assert [r["id"] for r in store.load_machines()] == [row["id"]]


def test_heartbeat_times_update_only_that_column(store):
    a = machine_row("gpu1", id="a" * 32)
    _write(store, upserts=[a])
    b = WriteBatch()
    b.heartbeats[a["id"]] = 1234.5
    b.heartbeats["f" * 32] = 99.0  # a machine not stored (forgotten meanwhile): nothing happens
    store.write(b)
    (row,) = store.load_machines()
    assert row == {**a, "last_heartbeat": 1234.5}
    # A new machine and its first saved heartbeat in one batch; a deleted one's is dropped.
    b = WriteBatch()
    new = machine_row("gpu2", id="b" * 32)
    b.upsert(new)
    b.heartbeats[new["id"]] = 2000.0
    b.heartbeats[a["id"]] = 3000.0
    b.delete(a["id"])
    assert a["id"] not in b.heartbeats
    store.write(b)
    assert {r["name"]: r["last_heartbeat"] for r in store.load_machines()} == {"gpu2": 2000.0}


def test_delete_of_unknown_id_is_harmless(store):
    _write(store, upserts=[machine_row("gpu1")])
    _write(store, deletes=["f" * 32])
    assert len(store.load_machines()) == 1


@pytest.mark.parametrize("explicit_delete", [True, False], ids=["with-delete", "name-only"])
def test_dead_name_moves_to_new_id_in_one_batch(store, explicit_delete):
    old = machine_row("gpu1", id="0" * 32, state="dead")
    other = machine_row("gpu2", id="2" * 32)
    _write(store, upserts=[old, other])
    new = machine_row("gpu1", id="1" * 32, state="live", t=5000.0,
                      identity=["gpu1", "other", "Intel Xeon", 64, 257000, []])
    b = WriteBatch()
    if explicit_delete:  # what the registry does with Registration.retired_id
        b.delete(old["id"])
    b.upsert(new)
    b.events += [
        event_row("retired", "gpu1", 5000.0, machine_id=old["id"], from_state="dead"),
        event_row("registered", "gpu1", 5000.0, machine_id=new["id"], to_state="live"),
    ]
    store.write(b)
    rows = _by_name(store)
    assert set(rows) == {"gpu1", "gpu2"}
    assert rows["gpu1"]["id"] == new["id"] and rows["gpu1"]["identity"] == new["identity"]
    assert all(r["id"] != old["id"] for r in store.load_machines())
    assert rows["gpu2"] == other
    assert [e["kind"] for e in store.events(machine="gpu1")] == ["registered", "retired"]


def test_failed_batch_writes_nothing(store):
    _write(store, upserts=[machine_row("gpu1", id="a" * 32)])
    b = WriteBatch()
    b.upsert(machine_row("gpu2", id="b" * 32))
    b.events.append(event_row("registered", "gpu2", 1.0))
    b.events.append({"ts": None, "kind": "broken"})  # NOT NULL violation
    with pytest.raises(StoreError):
        store.write(b)
    assert set(_by_name(store)) == {"gpu1"}  # one transaction: the upsert rolled back
    assert store.events() == []


def test_merge_folds_a_later_batch(store):
    first, later = WriteBatch(), WriteBatch()
    a, b = machine_row("a", id="a" * 32), machine_row("b", id="b" * 32)
    first.upsert(a)
    first.upsert(b)
    first.events.append(event_row("registered", "a", 1.0))
    later.upsert({**a, "state": "limbo"})
    later.delete(b["id"])
    later.events.append(event_row("disconnected", "a", 2.0))
    first.merge(later)
    store.write(first)
    rows = _by_name(store)
    assert set(rows) == {"a"} and rows["a"]["state"] == "limbo"
    assert [e["kind"] for e in store.events()] == ["disconnected", "registered"]


# ---------------------------------------------------------------- events


def test_events_filter_order_and_limit(store):
    evs = [
        event_row("registered", "gpu1", 100.0, to_state="live", actor="agent"),
        event_row("registered", "gpu2", 101.0, to_state="live"),
        event_row("disconnected", "gpu1", 150.0, from_state="live", to_state="limbo",
                  reason="connection closed"),
        event_row("forgotten", "gpu1", 200.0, from_state="limbo", to_state="dead", actor="alice"),
        event_row("heartbeat_missed", "gpu2", 200.0, from_state="live", to_state="limbo"),
    ]
    _write(store, events=evs[:3])
    _write(store, events=evs[3:])
    all_events = store.events()
    assert [(e["machine_name"], e["kind"]) for e in all_events] == [
        ("gpu2", "heartbeat_missed"),  # same ts as 'forgotten' but inserted later
        ("gpu1", "forgotten"),
        ("gpu1", "disconnected"),
        ("gpu2", "registered"),
        ("gpu1", "registered"),
    ]
    forgotten = all_events[1]
    assert forgotten["actor"] == "alice" and forgotten["from_state"] == "limbo"
    assert forgotten["to_state"] == "dead" and forgotten["ts"] == 200.0
    assert isinstance(forgotten["id"], int)
    assert all_events[4]["from_state"] is None
    assert [e["kind"] for e in store.events(machine="gpu1")] == ["forgotten", "disconnected", "registered"]
    assert [e["ts"] for e in store.events(since=150.0)] == [200.0, 200.0, 150.0]
    assert [e["kind"] for e in store.events(machine="gpu1", since=150.0)] == ["forgotten", "disconnected"]
    assert [e["kind"] for e in store.events(limit=2)] == ["heartbeat_missed", "forgotten"]
    assert [e["kind"] for e in store.events(machine="gpu2", limit=1)] == ["heartbeat_missed"]
    assert store.events(machine="nobody") == []
    assert store.events(since=201.0) == []


def test_events_default_columns(store):
    _write(store, events=[{"ts": 5.0, "kind": "note", "machine_name": "gpu1"}])
    (e,) = store.events()
    assert (e["machine_id"], e["reason"], e["actor"]) == ("", "", "system")


# ---------------------------------------------------------------- keys


def _add_key(store, name="alice", fp="SHA256:alice", role="operator", now=1.0):
    return store.add_key(name=name, role=role, fingerprint=fp, public_key=f"ssh-ed25519 AAAA {name}",
                         created_by="bootstrap", now=now)


def test_keys_add_find_list_revoke(store):
    alice = _add_key(store)
    assert alice["name"] == "alice" and alice["role"] == "operator" and alice["revoked_at"] is None
    assert alice["created_by"] == "bootstrap" and alice["public_key"].startswith("ssh-ed25519")
    bob = _add_key(store, "bob", "SHA256:bob", role="viewer", now=2.0)
    agent = _add_key(store, "gpu1", "SHA256:gpu1", role="agent", now=3.0)
    assert store.find_key("SHA256:alice") == alice
    assert store.find_key("SHA256:nobody") is None
    assert [k["name"] for k in store.list_keys()] == ["alice", "bob", "gpu1"]

    revoked = store.revoke_key("bob", now=10.0)
    assert [(k["fingerprint"], k["revoked_at"]) for k in revoked] == [("SHA256:bob", 10.0)]
    assert store.find_key("SHA256:bob") is None
    assert [k["name"] for k in store.list_keys()] == ["alice", "gpu1"]
    all_keys = {k["name"]: k for k in store.list_keys(include_revoked=True)}
    assert all_keys["bob"]["revoked_at"] == 10.0
    # by fingerprint too
    store.revoke_key("SHA256:gpu1", now=11.0)
    assert store.find_key(agent["fingerprint"]) is None
    # revoking again: nothing active by that name
    with pytest.raises(NotFound):
        store.revoke_key("bob", now=12.0)
    assert bob["id"] != alice["id"]


def test_revoke_key_revokes_every_key_with_that_name(store):
    _add_key(store, "ci", "SHA256:ci-1")
    _add_key(store, "ci", "SHA256:ci-2")
    _add_key(store, "other", "SHA256:other")
    assert {k["fingerprint"] for k in store.revoke_key("ci", now=5.0)} == {"SHA256:ci-1", "SHA256:ci-2"}
    assert [k["name"] for k in store.list_keys()] == ["other"]


def test_adding_active_duplicate_fingerprint_conflicts(store):
    _add_key(store, "alice", "SHA256:same")
    with pytest.raises(Conflict) as info:
        _add_key(store, "mallory", "SHA256:same", role="operator")
    assert "alice" in str(info.value)
    assert [k["name"] for k in store.list_keys(include_revoked=True)] == ["alice"]


def test_readding_revoked_key_reinstates_it(store):
    first = _add_key(store, "gpu1", "SHA256:k", role="agent", now=1.0)
    store.revoke_key("gpu1", now=2.0)
    again = _add_key(store, "gpu1-renamed", "SHA256:k", role="viewer", now=3.0)
    assert again["id"] == first["id"]  # same row, not a second one
    assert again["revoked_at"] is None and again["role"] == "viewer" and again["name"] == "gpu1-renamed"
    assert again["created_at"] == 3.0
    assert store.find_key("SHA256:k") == again
    assert len(store.list_keys(include_revoked=True)) == 1


# ---------------------------------------------------------------- tokens


def _token(store, tid="tok1", max_uses=2, expires_at=1000.0, now=0.0):
    store.create_token(id=tid, secret_hash="h" * 64, expires_at=expires_at, max_uses=max_uses,
                       created_by="alice", now=now)


def test_token_consumed_exactly_max_uses_times(store):
    _token(store, max_uses=2)
    assert store.consume_token("tok1", now=10.0) is True
    assert store.consume_token("tok1", now=11.0) is True
    assert store.consume_token("tok1", now=12.0) is False
    assert store.get_token("tok1")["uses"] == 2
    assert store.consume_token("nope", now=10.0) is False


def test_token_fails_after_expiry(store):
    _token(store, max_uses=5, expires_at=100.0)
    assert store.consume_token("tok1", now=99.9) is True
    assert store.consume_token("tok1", now=100.0) is False
    assert store.consume_token("tok1", now=500.0) is False
    assert store.get_token("tok1")["uses"] == 1


def test_token_fails_after_revoke(store):
    _token(store, max_uses=5)
    assert store.consume_token("tok1", now=1.0) is True
    store.revoke_token("tok1", now=2.0)
    assert store.consume_token("tok1", now=3.0) is False
    tok = store.get_token("tok1")
    assert tok["revoked_at"] == 2.0 and tok["uses"] == 1
    with pytest.raises(NotFound):
        store.revoke_token("tok1", now=4.0)
    with pytest.raises(NotFound):
        store.revoke_token("unknown", now=4.0)


def test_list_tokens_hides_secret_hash(store):
    _token(store, "t2", now=2.0)
    _token(store, "t1", now=1.0)
    tokens = store.list_tokens()
    assert [t["id"] for t in tokens] == ["t1", "t2"]  # by creation time
    assert all("secret_hash" not in t for t in tokens)
    assert store.get_token("t1")["secret_hash"] == "h" * 64
    assert store.get_token("missing") is None


def test_duplicate_token_id_is_a_store_error(store):
    _token(store)
    with pytest.raises(StoreError):
        _token(store)


def test_concurrent_token_consumption_is_atomic(store):
    _token(store, "shared", max_uses=3, expires_at=1e12)
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    results: list[object] = [None] * threads_n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = store.consume_token("shared", now=100.0)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, bool) for r in results), results
    assert results.count(True) == 3
    assert store.get_token("shared")["uses"] == 3


# ---------------------------------------------------------------- meta


def test_meta_get_set(store):
    assert store.get_meta("created_at") is None
    store.set_meta("created_at", "1718000000.0")
    store.set_meta("host_key_fp", "SHA256:x")
    assert store.get_meta("created_at") == "1718000000.0"
    store.set_meta("created_at", "overwritten")
    assert store.get_meta("created_at") == "overwritten"
    assert store.get_meta("host_key_fp") == "SHA256:x"


# ---------------------------------------------------------------- failures


def test_health_ok(store):
    assert store.health() is None


UNREACHABLE = "postgresql+psycopg://centrality:Sup3rS3cretPw@127.0.0.1:1/centrality?connect_timeout=3"


def test_health_of_unreachable_postgres():
    s = Store(UNREACHABLE)
    try:
        reason = s.health()
        assert isinstance(reason, str) and reason
        assert "\n" not in reason
        assert "Sup3rS3cretPw" not in reason
        assert "OperationalError" in reason
    finally:
        s.close()


@pytest.mark.parametrize("call", [
    lambda s: s.load_machines(),
    lambda s: s.migrate(),
    lambda s: s.events(),
    lambda s: s.find_key("SHA256:x"),
    lambda s: s.consume_token("t", 1.0),
    lambda s: s.get_meta("k"),
], ids=["load_machines", "migrate", "events", "find_key", "consume_token", "get_meta"])
def test_unreachable_postgres_raises_store_error_without_password(call):
    s = Store(UNREACHABLE)
    try:
        with pytest.raises(StoreError) as info:
            call(s)
        err = info.value
        assert err.code == "store_error" and err.exit_code == 11
        assert str(err).startswith("store unavailable")
        assert "Sup3rS3cretPw" not in str(err) and "Sup3rS3cretPw" not in err.reason
        assert "\n" not in str(err)
    finally:
        s.close()


def test_unusable_sqlite_path_raises_store_error(tmp_path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    s = Store(f"sqlite:///{directory}")
    try:
        assert s.health() is not None
        with pytest.raises(StoreError):
            s.load_machines()
    finally:
        s.close()


def test_invalid_url_raises_store_error():
    with pytest.raises(StoreError):
        Store("this is not a url")


@pytest.mark.parametrize("url", ["foo://x/y", "postgresql+psycopg://u:pw@host:notaport/db"])
def test_unusable_urls_raise_store_error(url):
    with pytest.raises(StoreError):
        Store(url).close()


def test_invalid_url_error_does_not_leak_the_password():
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg//centrality:Sup3rS3cretPw@db.example.com/centrality")
    assert "Sup3rS3cretPw" not in str(info.value)


def test_sqlite_does_not_rewrite_freed_pages_with_zeros(tmp_path):
    """Deleting compacted batches must not write their payload again as zeros (Debian builds
    SQLite with SECURE_DELETE): the file's pages are freed and reused, in-page content cleared."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 2  # FAST
    finally:
        store.close()


@pytest.mark.postgres
def test_replicas_migrating_a_fresh_postgres_at_once_all_start(postgres_db_url):
    """Several control planes started at the same moment on an empty database: one
    migrates, the others wait for it and find the schema at head."""
    import concurrent.futures

    stores = [Store(postgres_db_url) for _ in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(lambda s: s.migrate(), stores))  # raises what any of them raised
        with stores[0].engine.connect() as conn:
            assert conn.execute(sa.text("select version_num from alembic_version")).scalars().all() == [
                _head_revision()]
    finally:
        for s in stores:
            s.close()
