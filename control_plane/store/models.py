"""Tables. Times are Unix seconds (float, UTC) everywhere, for speed and
portability between SQLite and Postgres; ids are hex UUIDs or integers.

Schema changes go through a new Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class MachineRow(Base):
    """One machine, by name. Liveness lives here; history lives in events."""

    __tablename__ = "machines"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    state: Mapped[str] = mapped_column(String(8))
    identity: Mapped[list] = mapped_column(JSON)
    info: Mapped[dict] = mapped_column(JSON)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    key_fingerprint: Mapped[str] = mapped_column(String(128), default="")
    registered_at: Mapped[float] = mapped_column(Float)
    last_heartbeat: Mapped[float] = mapped_column(Float)
    state_since: Mapped[float] = mapped_column(Float)
    # Operator flags, independent of the liveness above (see control_plane/flags.py).
    drained: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    drain_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    drained_by: Mapped[str] = mapped_column(String(128), default="", server_default="")
    drained_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    auto_drained: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    unhealthy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    health: Mapped[list | None] = mapped_column(JSON, nullable=True)  # the last round of checks
    health_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    operator_labels: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class EventRow(Base):
    """A lifecycle or operator event: who/what/when/why."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_ts", "ts"), Index("ix_events_machine", "machine_name", "ts"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    machine_id: Mapped[str] = mapped_column(String(32), default="")
    machine_name: Mapped[str] = mapped_column(String(63), default="")
    from_state: Mapped[str | None] = mapped_column(String(8), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(8), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="system")


class KeyRow(Base):
    """A public key allowed to log in, with its role."""

    __tablename__ = "keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TokenRow(Base):
    """A join token. Only a hash of its secret is stored."""

    __tablename__ = "join_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[float] = mapped_column(Float)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class MetaRow(Base):
    """Small key/value facts about the installation (e.g. its creation time)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)




class MetricBatchRow(Base):
    """Raw samples: one row per agent batch (about 5 samples of every stream).

    The payload is the batch in its staged form (``staged.py``: times, the
    values as the agent packed them, the key list, the text streams when they
    changed), or the agent's JSON frame in rows of earlier versions. A row
    waits here until compaction makes it part of a chunk (``metric_chunks``):
    one row per batch instead of one per value keeps 10,000 machines at 1 Hz
    to about 2,000 rows a second, and a machine's window is one index range.
    """

    __tablename__ = "metric_batches"
    __table_args__ = (Index("ix_metric_batches_machine_ts", "machine_id", "ts_last"),
                      Index("ix_metric_batches_ts", "ts_last"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[str] = mapped_column(String(32))
    ts_first: Mapped[float] = mapped_column(Float)
    ts_last: Mapped[float] = mapped_column(Float)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class MetricRollupRow(Base):
    """One minute of one machine, until its hour's chunk: each key's min, max, sum
    and count (``staged.encode_minute``; JSON ``{key: [min, max, sum, count]}`` in
    rows of earlier versions)."""

    __tablename__ = "metric_rollups"
    __table_args__ = (Index("ix_metric_rollups_ts", "minute"),)

    machine_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    minute: Mapped[float] = mapped_column(Float, primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class MetricChunkRow(Base):
    """Compacted history: one machine's samples over a window, in the compressed
    column-wise format of ``tsz.py``.

    ``tier`` 0: every sample (a chunk of ``chunk_seconds``); 1: per-minute
    min/max/sum/count (a chunk per hour); 2: per-hour min/max/sum/count (a
    chunk per day). ``nbytes`` and ``nvalues`` (values held, not counting
    gaps) make the storage report a sum instead of a scan of the payloads.

    On Postgres the table is partitioned by ``(tier, ts_last)`` into one
    partition per tier and day (migration 0004), and retention drops whole
    partitions; the primary key therefore includes both.
    """

    __tablename__ = "metric_chunks"
    __table_args__ = (Index("ix_metric_chunks_machine", "machine_id", "tier", "ts_last"),
                      Index("ix_metric_chunks_tier_ts", "tier", "ts_last"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    tier: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    ts_last: Mapped[float] = mapped_column(Float, primary_key=True)
    machine_id: Mapped[str] = mapped_column(String(32))
    ts_first: Mapped[float] = mapped_column(Float)
    nvalues: Mapped[int] = mapped_column(Integer)
    nbytes: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class MetricCursorRow(Base):
    """The last batch stored per machine, so a replayed batch is stored once."""

    __tablename__ = "metric_cursors"

    machine_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)


class ExecAuditRow(Base):
    """One ``exec``: who ran what on which machines, and how each ended."""

    __tablename__ = "exec_audit"
    __table_args__ = (Index("ix_exec_audit_started", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    argv: Mapped[list] = mapped_column(JSON)
    selector: Mapped[str] = mapped_column(Text)  # the targets as typed
    machines: Mapped[list] = mapped_column(JSON)  # names it ran on
    skipped: Mapped[list] = mapped_column(JSON)  # [[name, reason], ...]
    results: Mapped[dict] = mapped_column(JSON)  # name -> {status, exit_code, signal, duration, ...}
    status: Mapped[str] = mapped_column(String(16))  # running | done | cancelled
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)  # worst of all


class ReplicaRow(Base):
    """One control-plane replica on a shared Postgres, under a lease it renews
    (``replicas.py``). ``reaped_at``: when a survivor moved its machines to limbo
    after the lease lapsed; a reaped incarnation can no longer renew or claim."""

    __tablename__ = "replicas"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[float] = mapped_column(Float)
    lease_expires: Mapped[float] = mapped_column(Float)
    reaped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: How peers dial and trust it (peering, migration 0006): the host key they pin at
    #: ``address``, and the key it logs in to them with (role ``replica``).
    host_fingerprint: Mapped[str] = mapped_column(String(128), default="", server_default="")
    peer_key: Mapped[str] = mapped_column(Text, default="", server_default="")
    peer_fingerprint: Mapped[str] = mapped_column(String(128), default="", server_default="")


class HoldingRow(Base):
    """Which replica holds which machine (its agent is connected there)."""

    __tablename__ = "replica_holdings"
    __table_args__ = (Index("ix_replica_holdings_replica", "replica"),)

    machine_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    replica: Mapped[str] = mapped_column(String(63))
    since: Mapped[float] = mapped_column(Float)
