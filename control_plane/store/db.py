"""The Store: a synchronous SQLAlchemy engine and every query the control plane runs.

The control plane calls these methods from worker threads (never on the event
loop). All writes that the lifecycle produces go through ``write()``, one
transaction per batch. SQLAlchemy errors are translated to ``StoreError`` here.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.exc import SQLAlchemyError

from centrality_core.errors import Conflict, NotFound, StoreError, UsageError

from .models import (
    EventRow, ExecAuditRow, KeyRow, MachineRow, MetaRow, MetricBatchRow, MetricCursorRow, MetricRollupRow,
    TokenRow,
)

from . import staged
from .shared_writes import write_machines

log = logging.getLogger("centrality.store")
F = TypeVar("F", bound=Callable[..., Any])


def _translated(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            # str(exc) can hold the URL of the database; keep only the first line.
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise StoreError(f"store unavailable: {type(exc).__name__}: {detail}") from exc

    return wrapper  # type: ignore[return-value]


@dataclass
class WriteBatch:
    """Writes collected between two flushes, applied in one transaction."""

    upserts: dict[str, dict] = field(default_factory=dict)  # machine id -> row
    deletes: set[str] = field(default_factory=set)          # machine ids
    heartbeats: dict[str, float] = field(default_factory=dict)  # machine id -> last heartbeat
    events: list[dict] = field(default_factory=list)
    metric_batches: list[dict] = field(default_factory=list)
    cursors: dict[str, dict] = field(default_factory=dict)  # machine id -> cursor row
    rollups: list[dict] = field(default_factory=list)       # {machine_id, minute, stats}
    audits: dict[str, dict] = field(default_factory=dict)   # exec id -> audit row (upserted)
    #: Called on the event loop once this batch is stored (e.g. metric acks).
    callbacks: list = field(default_factory=list)

    def upsert(self, row: dict) -> None:
        self.deletes.discard(row["id"])
        self.upserts[row["id"]] = row

    def delete(self, machine_id: str) -> None:
        self.upserts.pop(machine_id, None)
        self.heartbeats.pop(machine_id, None)
        self.deletes.add(machine_id)

    def __len__(self) -> int:
        return (len(self.upserts) + len(self.deletes) + len(self.heartbeats) + len(self.events)
                + len(self.metric_batches) + len(self.rollups) + len(self.callbacks) + len(self.audits))

    def merge(self, later: WriteBatch) -> None:
        """Fold ``later`` into this batch (used when a flush failed and is retried)."""
        for mid in later.deletes:
            self.delete(mid)
        for row in later.upserts.values():
            self.upsert(row)
        self.heartbeats.update(later.heartbeats)
        self.events.extend(later.events)
        self.metric_batches.extend(later.metric_batches)
        self.cursors.update(later.cursors)
        self.rollups.extend(later.rollups)
        self.callbacks.extend(later.callbacks)
        self.audits.update(later.audits)


#: Rows per multi-row INSERT (SQLite allows 32,766 parameters per statement).
ROWS_PER_STATEMENT = 500


class Enrolment(NamedTuple):
    """A key to enrol with a join token (``Store.enrol_many``)."""

    token: str
    name: str
    role: str
    fingerprint: str
    public_key: str


#: SQLite page cache per connection (KiB).
SQLITE_CACHE_KIB = 64 * 1024
#: Advisory lock key held while migrating a Postgres store (any constant of our own).
MIGRATION_LOCK = 0x63656E74  # "cent"


def _behind(stored: dict[str, tuple[str, int]], row: dict) -> bool:
    """Whether ``row`` (a metric batch or cursor with its stream and seq) is at or
    behind the cursor the store holds for its machine: already stored."""
    have = stored.get(row["machine_id"])
    return have is not None and have[0] == row.get("stream") and row["seq"] <= have[1]


@contextmanager
def _driver_cursor(conn, statement: str, **kwargs):
    """A cursor of the psycopg connection under ``conn`` (same transaction), whose
    errors become SQLAlchemy's, as if ``conn`` had run ``statement``: ``_translated``
    makes them a ``StoreError`` (the writer keeps its batch and retries), and a lost
    connection is invalidated so that the pool does not hand it out again."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        with conn.connection.driver_connection.cursor(**kwargs) as cur:
            yield cur
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error, connection_invalidated=lost,
                                         dialect=conn.dialect) from exc


def fetch_all(conn, stmt) -> list[tuple]:
    """``conn.execute(stmt).all()``, answered in binary on Postgres.

    For statements that read payloads (staged batches, minutes, chunks): in text a
    bytea comes as twice as many hex digits for psycopg to decode, a third of the
    CPU of taking a window of staged batches back for compaction. The columns read
    this way are plain (strings, floats, integers, bytes): psycopg gives the same
    Python values in binary. Other drivers: as ``conn.execute``.
    """
    if conn.dialect.driver != "psycopg":
        return conn.execute(stmt).all()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    sql = str(compiled)
    with _driver_cursor(conn, sql, binary=True) as cur:
        return cur.execute(sql, compiled.params).fetchall()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    # Batches of 10,000 machines land all over the (machine, time) index: keep
    # its hot pages in memory rather than re-reading them for every commit.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    # Checkpoint the write-ahead log every 64 MiB rather than every 4 MiB: index
    # pages that change in every commit are copied back once, not each time.
    cur.execute("PRAGMA wal_autocheckpoint=16384")
    # Debian's SQLite zeroes every freed page (SECURE_DELETE), so deleting a compacted
    # batch or an old chunk wrote its whole payload again, as zeros. FAST still clears
    # what is deleted inside b-tree pages but leaves freed overflow pages as they are
    # (until reused): metric samples, no secrets, in a file only the control plane reads.
    cur.execute("PRAGMA secure_delete=FAST")
    cur.close()


def _redact(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        #: Metric batches not written because the store already held them (replays).
        self.batches_already_stored = 0
        #: This control plane's replica name on a shared Postgres ("" alone): machine
        #: rows are then written as ``replicas.write_machines`` says.
        self.replica = ""
        try:
            parsed = sa.engine.make_url(url)
            self.dialect = parsed.get_backend_name()
            if self.dialect == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self.engine = sa.create_engine(url, connect_args={"check_same_thread": False})
                sa_event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
            # Never echo the URL: it may hold a password.
            scheme = url.split(":", 1)[0] if ":" in url else "?"
            raise StoreError(f"unusable database URL (scheme {scheme!r}): {type(exc).__name__}; "
                             "expected e.g. sqlite:///path/to.db or "
                             "postgresql+psycopg://user:password@host:5432/dbname") from None

    def __repr__(self) -> str:
        return f"Store({_redact(self.url)})"

    def describe(self) -> str:
        """For people: ``SQLite /path/to/store.db`` or ``PostgreSQL centrality@db:5432/centrality``
        (never the password)."""
        parsed = sa.engine.make_url(self.url)
        if self.dialect == "sqlite":
            return f"SQLite {parsed.database or ':memory:'}"
        where = _redact(self.url).split("://", 1)[-1]
        return f"{'PostgreSQL' if self.dialect == 'postgresql' else self.dialect} {where}"

    def _insert_many(self, conn, template: str, width: int, rows: list[tuple]) -> None:
        """``template`` (with ``{rows}``) run with many rows per statement.

        One statement per row would hand the GIL back and forth with the event
        loop thread once per row (SQLite's driver releases it around each step),
        and each hand-over can wait a whole switch interval while the loop is busy.
        """
        one = "(" + ", ".join(["?"] * width) + ")"
        for i in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[i:i + ROWS_PER_STATEMENT]
            conn.exec_driver_sql(self._sql(template.format(rows=", ".join([one] * len(chunk)))),
                                 tuple(chain.from_iterable(chunk)))

    def _append(self, conn, table: str, columns: tuple[str, ...], pg_types: tuple[str, ...],
                rows: list[tuple]) -> None:
        """Rows appended to ``table`` (no conflict handling): on Postgres with a binary
        ``COPY``, on SQLite with ``_insert_many``.

        The hot appends (staged batches, chunks) are what the control plane pays per
        stored batch: on Postgres a multi-row ``INSERT`` costs ~16 us of this process's
        CPU per staged batch (psycopg binds every value, bytea as escaped text), a
        binary ``COPY`` ~4 us. ``pg_types`` are the columns' Postgres types, in order
        (a binary ``COPY`` sends each value in its column's exact binary form). Other
        Postgres drivers than psycopg 3 get the ``INSERT``.
        """
        if not rows:
            return
        if self.engine.dialect.driver != "psycopg":
            self._insert_many(conn, f"INSERT INTO {table} ({', '.join(columns)}) VALUES {{rows}}", len(columns), rows)
            return
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        with _driver_cursor(conn, sql) as cur, cur.copy(sql) as copy:
            copy.set_types(list(pg_types))
            for row in rows:
                copy.write_row(row)

    def _sql(self, text: str) -> str:
        """Driver-level SQL written with ``?`` placeholders, in this driver's style."""
        return text if self.engine.dialect.paramstyle == "qmark" else text.replace("?", "%s")

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema

    @_translated
    def migrate(self, target: str = "head") -> str:
        """Bring the schema to ``target`` (an Alembic revision: the newest by default,
        an earlier one to hand the store back to an earlier version); returns the
        revision it was at. A store that a newer version migrated past what this one
        knows is refused (``StoreError``, code ``store_too_new``)."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        script = ScriptDirectory.from_config(cfg)
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Replicas starting at once on a fresh database: one migrates, the others
                # wait for its commit and then find the schema at head (DDL is transactional).
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            known = {r.revision for r in script.walk_revisions()}
            current = MigrationContext.configure(conn).get_current_heads()
            newer = sorted(set(current) - known)
            if newer:
                raise StoreError(
                    f"the store was migrated by a newer centrality (schema revision {', '.join(newer)}; "
                    f"this version knows up to {script.get_current_head()}): run that version or a newer "
                    "one (every replica of a set runs the same version), or downgrade the store with it "
                    "first (docs/deployment.md, \"Upgrading\")", code="store_too_new")
            if target != "head" and target not in known:
                raise UsageError(f"unknown schema revision {target!r} (this version knows "
                                 f"{', '.join(sorted(known))})")
            cfg.attributes["connection"] = conn
            below = {r.revision for head in current for r in script.iterate_revisions(head, "base")}
            if target != "head" and target in below and target not in current:
                command.downgrade(cfg, target)
            else:
                command.upgrade(cfg, target)
            return ", ".join(current) or "none"

    @_translated
    def schema_revision(self) -> str:
        """The store's Alembic revision ("none": not migrated yet)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return ", ".join(MigrationContext.configure(conn).get_current_heads()) or "none"

    def health(self) -> str | None:
        """None when the store answers, else a one-line reason."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return None
        except SQLAlchemyError as exc:
            return f"{type(exc).__name__}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"

    # ------------------------------------------------------------------ machines & events

    @_translated
    def load_machines(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(MachineRow.__table__)).mappings().all()
        return [dict(r) for r in rows]

    @_translated
    def write(self, batch: WriteBatch) -> None:
        if not len(batch):
            return
        machines = MachineRow.__table__
        with self.engine.begin() as conn:
            if batch.deletes:
                conn.execute(machines.delete().where(machines.c.id.in_(batch.deletes)))
            if batch.upserts and self.replica:
                write_machines(conn, self.replica, list(batch.upserts.values()))
            elif batch.upserts:
                rows = list(batch.upserts.values())
                # A name can move from one id to another (dead name reused):
                # clear names about to be taken before upserting.
                conn.execute(machines.delete().where(
                    machines.c.name.in_([r["name"] for r in rows]),
                    machines.c.id.not_in([r["id"] for r in rows])))
                conn.execute(self._upsert(machines, ["id"]), rows)
            if batch.events:
                conn.execute(EventRow.__table__.insert(), batch.events)
            # The hot statements (thousands of rows a second at fleet scale) go
            # straight to the driver, without per-row parameter processing.
            if batch.heartbeats:
                conn.exec_driver_sql(self._sql("UPDATE machines SET last_heartbeat = ? WHERE id = ?"),
                                     [(ts, mid) for mid, ts in batch.heartbeats.items()])
            metric_batches, cursors = batch.metric_batches, list(batch.cursors.values())
            if cursors and self.dialect == "postgresql":
                # What the store already holds wins over what this process remembers:
                # a batch at or behind the stored cursor was stored by another control
                # plane (a replica the agent left before its ack arrived). SQLite has
                # one control plane (exclusive.py), whose cursors are the stored ones.
                stored = self._stored_cursors(conn, [c["machine_id"] for c in cursors])
                if stored:
                    metric_batches = [r for r in metric_batches if not _behind(stored, r)]
                    cursors = [c for c in cursors if not _behind(stored, c)]
                    self.batches_already_stored += len(batch.metric_batches) - len(metric_batches)
            if metric_batches:
                self._append(conn, "metric_batches", ("machine_id", "ts_first", "ts_last", "payload"),
                             ("varchar", "float8", "float8", "bytea"),
                             [(r["machine_id"], r["ts_first"], r["ts_last"], r["payload"]) for r in metric_batches])
            if cursors:
                self._insert_many(conn, "INSERT INTO metric_cursors (machine_id, stream, seq) VALUES {rows} "
                                  "ON CONFLICT (machine_id) DO UPDATE SET stream = excluded.stream, "
                                  "seq = excluded.seq", 3,
                                  [(c["machine_id"], c["stream"], c["seq"]) for c in cursors])
            if batch.rollups:
                self._write_rollups(conn, batch.rollups)
            if batch.audits:
                conn.execute(self._upsert(ExecAuditRow.__table__, ["id"]), list(batch.audits.values()))

    def _stored_cursors(self, conn, machine_ids: list[str]) -> dict[str, tuple[str, int]]:
        """The stored cursors of these machines (Postgres). Their rows stay locked
        until the transaction ends (taken in id order: two writers cannot
        deadlock), so a replica writing the same replayed batch at the same time
        waits for this transaction and then sees its cursor."""
        rows = conn.exec_driver_sql("SELECT machine_id, stream, seq FROM metric_cursors WHERE machine_id "
                                    "= ANY(%s) ORDER BY machine_id FOR UPDATE", (sorted(set(machine_ids)),))
        return {mid: (stream, seq) for mid, stream, seq in rows}

    def _write_rollups(self, conn, rollups: list[dict]) -> None:
        """Upsert minutes (``stats``: a ``staged.KeyStats`` or ``{key: [min, max, sum,
        count]}``) in their staged form, merging with a minute already stored (late samples)."""
        t = MetricRollupRow.__table__
        merged: dict[tuple, staged.KeyStats] = {}
        for r in rollups:
            k = (r["machine_id"], r["minute"])
            s = staged.KeyStats.of(r["stats"])
            merged[k] = merged[k].merge(s) if k in merged else s
        existing = conn.execute(sa.select(t.c.machine_id, t.c.minute, t.c.payload).where(
            sa.tuple_(t.c.machine_id, t.c.minute).in_(list(merged)))).all()
        for mid, minute, payload in existing:
            merged[(mid, minute)] = staged.minute_stats(payload).merge(merged[(mid, minute)])
        conn.execute(self._upsert(t, ["machine_id", "minute"]), [
            {"machine_id": mid, "minute": minute, "payload": staged.encode_minute(stats)}
            for (mid, minute), stats in merged.items()])

    def _upsert(self, table: sa.Table, keys: list[str]):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=updates)

    @_translated
    def events(self, *, limit: int = 100, machine: str | None = None,
               since: float | None = None) -> list[dict]:
        t = EventRow.__table__
        q = sa.select(t).order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit)
        if machine:
            q = q.where(t.c.machine_name == machine)
        if since is not None:
            q = q.where(t.c.ts >= since)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------ metrics

    @_translated
    def load_cursors(self) -> dict[str, tuple[str, int]]:
        t = MetricCursorRow.__table__
        with self.engine.connect() as conn:
            return {mid: (stream, seq) for mid, stream, seq in conn.execute(sa.select(t))}

    @_translated
    def metric_batches(self, machine_id: str, since: float, until: float) -> list[bytes]:
        t = MetricBatchRow.__table__
        q = (sa.select(t.c.payload).where(t.c.machine_id == machine_id, t.c.ts_last >= since,
                                          t.c.ts_first <= until).order_by(t.c.ts_first, t.c.id))
        with self.engine.connect() as conn:
            return [payload for payload, in fetch_all(conn, q)]

    @_translated
    def metric_rollups(self, machine_id: str, since: float, until: float) -> list[tuple[float, bytes]]:
        t = MetricRollupRow.__table__
        q = (sa.select(t.c.minute, t.c.payload).where(
            t.c.machine_id == machine_id, t.c.minute >= since, t.c.minute <= until).order_by(t.c.minute))
        with self.engine.connect() as conn:
            return [tuple(r) for r in fetch_all(conn, q)]

    @_translated
    def apply_retention(self, now: float, *, raw: float, rollups: float, events: float,
                        audit: float | None = None) -> dict[str, int]:
        """Delete what is older than each table's retention (seconds). Returns row counts."""
        deleted = {}
        with self.engine.begin() as conn:
            if audit is not None:
                t = ExecAuditRow.__table__
                deleted["exec_audit"] = conn.execute(t.delete().where(t.c.started_at < now - audit)).rowcount
            for name, table, column, keep in (
                ("metric_batches", MetricBatchRow.__table__, "ts_last", raw),
                ("metric_rollups", MetricRollupRow.__table__, "minute", rollups),
                ("events", EventRow.__table__, "ts", events),
            ):
                deleted[name] = conn.execute(table.delete().where(table.c[column] < now - keep)).rowcount
            tokens = TokenRow.__table__  # expired tokens are kept as long as events
            deleted["join_tokens"] = conn.execute(tokens.delete().where(tokens.c.expires_at < now - events)).rowcount
        return deleted

    # ------------------------------------------------------------------ exec audit

    @_translated
    def audit(self, *, limit: int = 100, since: float | None = None, actor: str | None = None,
              id: str | None = None) -> list[dict]:
        """Exec audit records, newest first."""
        t = ExecAuditRow.__table__
        q = sa.select(t).order_by(t.c.started_at.desc(), t.c.id).limit(limit)
        if since is not None:
            q = q.where(t.c.started_at >= since)
        if actor:
            q = q.where(t.c.actor == actor)
        if id:
            q = q.where(t.c.id.startswith(id, autoescape=True))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------ keys

    @_translated
    def add_key(self, *, name: str, role: str, fingerprint: str, public_key: str,
                created_by: str, now: float) -> dict:
        t = KeyRow.__table__
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(t).where(t.c.fingerprint == fingerprint)).mappings().first()
            if old and old["revoked_at"] is None:
                raise Conflict(f"this key is already registered as {old['name']!r} ({old['role']})")
            if old:  # a revoked key added again: reinstate it with its new role
                conn.execute(t.update().where(t.c.id == old["id"]).values(
                    name=name, role=role, revoked_at=None, created_at=now, created_by=created_by))
            else:
                conn.execute(t.insert().values(
                    name=name, role=role, fingerprint=fingerprint, public_key=public_key,
                    created_at=now, created_by=created_by))
            return dict(conn.execute(sa.select(t).where(t.c.fingerprint == fingerprint)).mappings().one())

    @_translated
    def find_key(self, fingerprint: str) -> dict | None:
        t = KeyRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(
                t.c.fingerprint == fingerprint, t.c.revoked_at.is_(None))).mappings().first()
        return dict(row) if row else None

    @_translated
    def list_keys(self, include_revoked: bool = False) -> list[dict]:
        t = KeyRow.__table__
        q = sa.select(t).order_by(t.c.id)
        if not include_revoked:
            q = q.where(t.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    @_translated
    def revoke_key(self, name_or_fingerprint: str, now: float) -> list[dict]:
        """Revoke every live key with that name or fingerprint; return them."""
        t = KeyRow.__table__
        match = sa.or_(t.c.name == name_or_fingerprint, t.c.fingerprint == name_or_fingerprint)
        with self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(
                sa.select(t).where(match, t.c.revoked_at.is_(None))).mappings()]
            if not rows:
                raise NotFound(f"no active key named {name_or_fingerprint!r}")
            conn.execute(t.update().where(t.c.id.in_([r["id"] for r in rows])).values(revoked_at=now))
            if self.dialect == "postgresql":  # every replica closes that key's connections
                conn.execute(sa.select(sa.func.pg_notify("centrality_keys",
                                                         " ".join(r["fingerprint"] for r in rows))))
        return [{**r, "revoked_at": now} for r in rows]

    # ------------------------------------------------------------------ join tokens

    @_translated
    def create_token(self, *, id: str, secret_hash: str, expires_at: float, max_uses: int,
                     created_by: str, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(TokenRow.__table__.insert().values(
                id=id, secret_hash=secret_hash, created_at=now, created_by=created_by,
                expires_at=expires_at, max_uses=max_uses, uses=0))

    @_translated
    def get_token(self, token_id: str) -> dict | None:
        t = TokenRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == token_id)).mappings().first()
        return dict(row) if row else None

    @_translated
    def consume_token(self, token_id: str, now: float) -> bool:
        """Count one use, atomically; False if expired, revoked or used up meanwhile."""
        with self.engine.begin() as conn:
            return _use_token(conn, token_id, now)

    @_translated
    def enrol(self, *, token: str, now: float, name: str, role: str, fingerprint: str,
              public_key: str) -> tuple[str, dict | None]:
        """Check a join token, count one use and record the key, in one transaction.

        Returns ``("ok", token_row)``, or a refusal code (``token_invalid``,
        ``token_revoked``, ``token_expired``, ``token_used``) with the token row
        when there is one. A key already recorded and active is left as it is.
        """
        outcome, row, _ = self.enrol_many([Enrolment(token, name, role, fingerprint, public_key)], now)[0]
        return outcome, row

    @_translated
    def enrol_many(self, requests: list[Enrolment], now: float) -> list[tuple[str, dict | None, dict | None]]:
        """``enrol`` for many keys in one transaction, in order, as if one after another:
        ``(outcome, token_row, key_row)`` each (the key row as ``find_key`` reads it, when
        ``ok``). A first join of thousands of machines then costs a few statements per
        batch of enrolments instead of five and a commit per key."""
        from centrality_core.joinstring import secret_matches

        tokens, keys = TokenRow.__table__, KeyRow.__table__
        out: list[tuple[str, dict | None, dict | None]] = [("token_invalid", None, None)] * len(requests)
        by_token: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_token.setdefault(r.token.partition(".")[0], []).append(i)
        with self.engine.begin() as conn:
            granted: list[int] = []
            for token_id, idxs in by_token.items():
                row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).mappings().first()
                if row is None:
                    continue
                row = dict(row)
                valid = [i for i in idxs if secret_matches(requests[i].token, row["secret_hash"])]
                refusal = ("token_revoked" if row["revoked_at"] is not None
                           else "token_expired" if row["expires_at"] <= now else None)
                if refusal is None:
                    took = valid[:max(0, row["max_uses"] - row["uses"])]
                    if took and not _use_token(conn, token_id, now, len(took)):
                        # Used by another control plane meanwhile (a shared store): one at a time.
                        took = [i for i in took if _use_token(conn, token_id, now)]
                    granted += took
                    for i in took:
                        out[i] = ("ok", row, None)
                for i in valid:
                    if out[i][0] != "ok":
                        out[i] = (refusal or "token_used", row, None)
            fps = list(dict.fromkeys(requests[i].fingerprint for i in granted))
            if fps:
                old = {r["fingerprint"]: r for r in conn.execute(
                    sa.select(keys).where(keys.c.fingerprint.in_(fps))).mappings()}
                new, seen = [], set()
                for i in granted:
                    r = requests[i]
                    if r.fingerprint in seen:
                        continue  # the same key twice in one batch: the first records it
                    seen.add(r.fingerprint)
                    values = dict(name=r.name, role=r.role, created_at=now,
                                  created_by=f"token:{r.token.partition('.')[0]}")
                    if r.fingerprint not in old:
                        new.append({**values, "fingerprint": r.fingerprint, "public_key": r.public_key})
                    elif old[r.fingerprint]["revoked_at"] is not None:
                        conn.execute(keys.update().where(keys.c.id == old[r.fingerprint]["id"]).values(
                            **values, revoked_at=None))
                if new:
                    conn.execute(keys.insert(), new)
                active = {r["fingerprint"]: dict(r) for r in conn.execute(sa.select(keys).where(
                    keys.c.fingerprint.in_(fps), keys.c.revoked_at.is_(None))).mappings()}
                for i in granted:
                    out[i] = ("ok", out[i][1], active.get(requests[i].fingerprint))
        return out

    @_translated
    def unenrol(self, *, fingerprint: str, token_id: str) -> None:
        """Undo ``enrol``: drop the key it recorded and give the token its use back."""
        tokens, keys = TokenRow.__table__, KeyRow.__table__
        with self.engine.begin() as conn:
            n = conn.execute(keys.delete().where(keys.c.fingerprint == fingerprint,
                                                 keys.c.created_by == f"token:{token_id}")).rowcount
            if n:
                conn.execute(tokens.update().where(tokens.c.id == token_id, tokens.c.uses > 0)
                             .values(uses=tokens.c.uses - 1))

    @_translated
    def list_tokens(self) -> list[dict]:
        t = TokenRow.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.created_at)).mappings().all()
        return [{k: v for k, v in r.items() if k != "secret_hash"} for r in rows]

    @_translated
    def revoke_token(self, token_id: str, now: float) -> None:
        t = TokenRow.__table__
        with self.engine.begin() as conn:
            n = conn.execute(t.update().where(t.c.id == token_id, t.c.revoked_at.is_(None))
                             .values(revoked_at=now)).rowcount
        if not n:
            raise NotFound(f"no active token {token_id!r}")

    # ------------------------------------------------------------------ meta

    @_translated
    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(MetaRow.value).where(MetaRow.key == key)).scalar()

    @_translated
    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            self._set_meta(conn, key, value)

    def _get_meta(self, conn, key: str) -> str | None:
        return conn.execute(sa.select(MetaRow.value).where(MetaRow.key == key)).scalar()

    def _set_meta(self, conn, key: str, value: str) -> None:
        conn.execute(self._upsert(MetaRow.__table__, ["key"]), [{"key": key, "value": value}])


def _use_token(conn, token_id: str, now: float, n: int = 1) -> bool:
    """The one atomic statement that counts ``n`` token uses (valid, unexpired, not used up)."""
    t = TokenRow.__table__
    return conn.execute(t.update().where(
        t.c.id == token_id, t.c.revoked_at.is_(None), t.c.expires_at > now,
        t.c.uses + n <= t.c.max_uses).values(uses=t.c.uses + n)).rowcount == 1


__all__ = ["Store", "WriteBatch"]
