"""Replicas on one Postgres: leases, holdings, registration of a name, and moving
a lapsed replica's machines to limbo.

Used by ``control_plane/replica.py`` (see docs/architecture.md, "Beyond one machine").

* Each replica has a row in ``replicas`` under a **lease** it renews
  (``start``, ``renew``). A row is one *incarnation*: ``started_at`` tells a
  restarted replica from the one before, so a stale process cannot renew.
* ``replica_holdings`` records which replica holds which machine (``claim``
  when its agent registers there, ``let_go`` when it leaves).
* When a lease **lapses** (a crash, a partition), any survivor may ``reap``
  it: in one transaction, the replica's row is marked reaped by a conditional
  update (only the first survivor's update matches; a second one, even at the
  same instant, waits on the row lock and then matches nothing), its holdings
  are deleted, and those machines still live go to limbo with an event each.
  Exactly once, whoever tries. A reaped incarnation can neither renew nor
  claim again: it must start afresh, so a replica cut off by a partition
  cannot keep machines that were taken from it.

* ``take`` decides a registration in the database: under an advisory lock on
  the name and a shared lock on this incarnation's row, it reads the stored
  machine and who holds it, applies the pure lifecycle rules to that, and,
  when they accept, writes the machine live and claims it, in one
  transaction. Two replicas taking one name serialise on the lock: the
  second sees the first's machine live and held, and is refused.
* ``write_machines`` is how a replica's store writer upserts machine rows: a
  row held by another replica is left alone (a stale write of a machine that
  moved on), and the operator columns (drain, operator labels) are written
  only by ``save_flags``, by whichever replica the operator asked.

Order that keeps this sound: claim a machine before declaring it live, and
stop serving machines as soon as ``renew`` answers False.

Times are Unix seconds passed in by the caller (a clock for the tests).
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass

import sqlalchemy as sa

from centrality_core import names
from centrality_core.errors import Conflict, UsageError
from centrality_core.lifecycle import Fleet, Liveness, Machine, Refusal, Thresholds

from .db import Store, _translated
from .models import EventRow, HoldingRow, MachineRow, MetricCursorRow, ReplicaRow
from .shared_writes import OPERATOR_COLUMNS, write_machines  # noqa: F401 - part of this module's face

#: NOTIFY channels: a machine's operator flags changed (payload: its id); keys were
#: revoked (payload: fingerprints, space-separated).
MACHINES_CHANNEL = "centrality_machines"
KEYS_CHANNEL = "centrality_keys"

#: Seconds a lease lasts unless renewed; a replica renews it every third of that.
LEASE_S = 15.0

replicas_t = ReplicaRow.__table__
holdings_t = HoldingRow.__table__
machines_t = MachineRow.__table__
cursors_t = MetricCursorRow.__table__


@dataclass(frozen=True)
class Lease:
    """One incarnation of a replica, as it stands in the store."""

    name: str
    #: Where its peers dial it (its own address, not a load balancer's).
    address: str
    started_at: float
    expires_at: float
    #: The host key peers pin at ``address``; the key it logs in to peers with.
    host_fingerprint: str = ""
    peer_key: str = ""
    peer_fingerprint: str = ""


def _lease(r) -> Lease:
    return Lease(r.name, r.address, r.started_at, r.lease_expires, r.host_fingerprint, r.peer_key,
                 r.peer_fingerprint)


def default_name(port: int, hostname: str | None = None) -> str:
    """This host's name and the port: ``cp-east-1-8022`` (a valid machine-style name)."""
    host = names.from_hostname(hostname or socket.gethostname())
    return f"{host[:57].strip('-._')}-{port}"


def check_name(name: str) -> str:
    if not names.is_valid(name):
        raise UsageError(f"invalid replica name {name[:80]!r}: a replica's name is {names.NAME_RULE}")
    return name


@_translated
def start(store: Store, name: str, address: str, now: float, ttl: float = LEASE_S, *,
          host_fingerprint: str = "", peer_key: str = "", peer_fingerprint: str = "") -> Lease:
    """Begin an incarnation of replica ``name``, or ``Conflict`` when a running replica has that name.

    A name is free when its lease lapsed, when it was reaped, or when the row
    names the same address: that address is ours now, so the process that had
    it is gone (a restart after a crash, before its lease ran out).
    """
    lease = Lease(name, address, now, now + ttl, host_fingerprint, peer_key, peer_fingerprint)
    identity = {"host_fingerprint": host_fingerprint, "peer_key": peer_key, "peer_fingerprint": peer_fingerprint}
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(replicas_t).where(replicas_t.c.name == name).with_for_update()).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(replicas_t.insert().values(name=name, address=address, started_at=now,
                                                            lease_expires=lease.expires_at, reaped_at=None,
                                                            **identity))
            except sa.exc.IntegrityError:  # another replica of that name started at this very moment
                raise Conflict(f"replica name {name!r} is in use by a replica starting now: "
                               "choose another --replica") from None
            return lease
        if row.lease_expires >= now and row.reaped_at is None and row.address != address:
            raise Conflict(f"replica name {name!r} is in use by a running replica at {row.address} "
                           f"(its lease runs {row.lease_expires - now:.0f}s more): choose another --replica")
        conn.execute(replicas_t.update().where(replicas_t.c.name == name).values(
            address=address, started_at=now, lease_expires=lease.expires_at, reaped_at=None, **identity))
    return lease


@_translated
def renew(store: Store, lease: Lease, now: float, ttl: float = LEASE_S) -> Lease | None:
    """The renewed lease, or None when this incarnation lost it (reaped, or replaced)."""
    expires = now + ttl
    with store.engine.begin() as conn:
        done = conn.execute(replicas_t.update().where(
            replicas_t.c.name == lease.name, replicas_t.c.started_at == lease.started_at,
            replicas_t.c.reaped_at.is_(None)).values(lease_expires=expires)).rowcount
    return dataclasses.replace(lease, expires_at=expires) if done else None


def _current(conn, lease: Lease):
    """Lock this incarnation's row (shared) if it is still the current one, unreaped."""
    return conn.execute(sa.select(replicas_t.c.name).where(
        replicas_t.c.name == lease.name, replicas_t.c.started_at == lease.started_at,
        replicas_t.c.reaped_at.is_(None)).with_for_update(read=True)).first()


@_translated
def claim(store: Store, lease: Lease, machine_ids: list[str], now: float) -> bool:
    """Record that this replica holds ``machine_ids`` (taken from whoever held them).

    False, and nothing recorded, when this incarnation was reaped or replaced.
    """
    if not machine_ids:
        return True
    rows = [{"machine_id": mid, "replica": lease.name, "since": now} for mid in sorted(set(machine_ids))]
    with store.engine.begin() as conn:
        if _current(conn, lease) is None:
            return False
        conn.execute(store._upsert(holdings_t, ["machine_id"]), rows)
    return True


@_translated
def let_go(store: Store, lease: Lease, machine_ids: list[str]) -> None:
    """This replica no longer holds these machines (their agents left it)."""
    with store.engine.begin() as conn:
        conn.execute(holdings_t.delete().where(holdings_t.c.replica == lease.name,
                                               holdings_t.c.machine_id.in_(machine_ids)))


@_translated
def holdings(store: Store, replica: str | None = None) -> dict[str, str]:
    """machine id -> the replica holding it (of one replica, or all)."""
    q = sa.select(holdings_t.c.machine_id, holdings_t.c.replica)
    if replica is not None:
        q = q.where(holdings_t.c.replica == replica)
    with store.engine.connect() as conn:
        return dict(conn.execute(q).all())


@_translated
def held_counts(store: Store) -> dict[str, int]:
    """How many machines each replica holds."""
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(holdings_t.c.replica, sa.func.count())
                                 .group_by(holdings_t.c.replica)).all())


@_translated
def leases(store: Store) -> list[tuple[Lease, float | None]]:
    """Every replica's current incarnation, and when it was reaped (None: not reaped)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(replicas_t).order_by(replicas_t.c.name)).all()
    return [(_lease(r), r.reaped_at) for r in rows]


@_translated
def running(store: Store, now: float) -> list[Lease]:
    """The replicas running now (lease current, not reaped), by name: the peers to dial."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(replicas_t).where(
            replicas_t.c.lease_expires >= now, replicas_t.c.reaped_at.is_(None)).order_by(replicas_t.c.name)).all()
    return [_lease(r) for r in rows]


@_translated
def running_with_key(store: Store, peer_fingerprint: str, now: float) -> Lease | None:
    """The running replica that logs in to its peers with this key, if any."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(replicas_t).where(
            replicas_t.c.peer_fingerprint == peer_fingerprint, replicas_t.c.lease_expires >= now,
            replicas_t.c.reaped_at.is_(None))).first()
    return None if row is None else _lease(row)


@_translated
def lapsed(store: Store, now: float) -> list[Lease]:
    """Replicas whose lease ran out and whose machines no one has moved yet."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(replicas_t).where(
            replicas_t.c.lease_expires < now, replicas_t.c.reaped_at.is_(None)).order_by(replicas_t.c.name)).all()
    return [_lease(r) for r in rows]


@_translated
def reap(store: Store, survivor: str, name: str, now: float) -> list[str] | None:
    """Move the machines of lapsed replica ``name`` to limbo, with an event each.

    Returns the names of the machines moved (those it held that were live), or
    None when there was nothing to do: its lease has not lapsed, it renewed in
    time, or another survivor reaped it first. Exactly one caller gets a list.
    """
    with store.engine.begin() as conn:
        won = conn.execute(replicas_t.update().where(
            replicas_t.c.name == name, replicas_t.c.lease_expires < now,
            replicas_t.c.reaped_at.is_(None)).values(reaped_at=now)).rowcount
        if not won:
            return None
        held = list(conn.execute(holdings_t.delete().where(holdings_t.c.replica == name)
                                 .returning(holdings_t.c.machine_id)).scalars())
        if not held:
            return []
        moved = conn.execute(machines_t.update().where(
            machines_t.c.id.in_(held), machines_t.c.state == "live").values(state="limbo", state_since=now)
            .returning(machines_t.c.id, machines_t.c.name)).all()
        if moved:
            conn.execute(EventRow.__table__.insert(), [{
                "ts": now, "kind": "replica_lost", "machine_id": mid, "machine_name": mname,
                "from_state": "live", "to_state": "limbo",
                "reason": f"replica {name} stopped renewing its lease (crash or partition)",
                "actor": f"replica:{survivor}"} for mid, mname in moved])
    return sorted(mname for _, mname in moved)


@_translated
def stop(store: Store, lease: Lease) -> None:
    """A clean shutdown: this incarnation's row and holdings go (its own registry has
    already put its machines in limbo). Does nothing if it was replaced meanwhile."""
    with store.engine.begin() as conn:
        if _current(conn, lease) is None:
            return
        conn.execute(holdings_t.delete().where(holdings_t.c.replica == lease.name))
        conn.execute(replicas_t.delete().where(replicas_t.c.name == lease.name,
                                               replicas_t.c.started_at == lease.started_at))


# ---------------------------------------------------------------------- machines


@dataclass
class Taken:
    """Outcome of ``take``: a refusal, or the machine id the name is registered under."""

    refusal: Refusal | None
    #: The machine as the store had it before (None: a name the store does not know).
    before: Machine | None
    #: Its stored row before (info, labels, flags), or None.
    row: dict | None
    machine_id: str = ""
    #: The last metric batch stored for it, by whichever replica (``metric_cursors``): a
    #: machine arriving from another replica replays what that one never acknowledged.
    cursor: tuple[str, int] | None = None


class LeaseLost(Exception):
    """This incarnation was reaped or replaced: it may not take machines."""


def _machine(row, held_by: str, local_live: bool, me: str) -> Machine:
    """The stored machine as the lifecycle rules should see it from replica ``me``."""
    state = Liveness(row.state)
    if state is Liveness.LIVE:
        if held_by and held_by != me:
            pass  # live on another replica (even one whose lease lapsed: its reaper decides)
        elif held_by == me and local_live:
            held_by = me
        else:  # nobody serves it (its replica let go, or was reaped, or a crash remnant)
            state, held_by = Liveness.LIMBO, ""
    return Machine(row.id, row.name, state, tuple(_freeze(row.identity)), row.last_heartbeat,
                   row.state_since, owner=row.key_fingerprint or "",
                   held_by=held_by if state is Liveness.LIVE else "")


def _freeze(value):
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@_translated
def take(store: Store, lease: Lease, thresholds: Thresholds, *, name: str, identity: tuple, key: str,
         info: dict, labels: dict, local_live: bool, now: float) -> Taken:
    """Register ``name`` on this replica if the rules allow it, decided in the database.

    ``local_live``: this process serves a live machine of that name (the store
    cannot know which of its own connections are open). Raises ``LeaseLost``
    when this incarnation may no longer claim machines.
    """
    from ..records import Flags, effective_labels

    with store.engine.begin() as conn:
        if _current(conn, lease) is None:
            raise LeaseLost(lease.name)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"centrality.name:{name}"})
        row = conn.execute(sa.select(machines_t).where(machines_t.c.name == name).with_for_update()).first()
        fleet = Fleet(thresholds)
        before = None
        if row is not None:
            held_by = conn.execute(sa.select(holdings_t.c.replica).where(
                holdings_t.c.machine_id == row.id)).scalar() or ""
            before = _machine(row, held_by, local_live, lease.name)
            fleet.machines[name] = Machine(**vars(before))
        reg = fleet.register(name, identity, object(), now, key=key)
        stored = dict(row._mapping) if row is not None else None
        if reg.refusal is not None:
            return Taken(reg.refusal, before, stored)
        if reg.retired_id:
            conn.execute(holdings_t.delete().where(holdings_t.c.machine_id == reg.retired_id))
            conn.execute(machines_t.delete().where(machines_t.c.id == reg.retired_id))
        flags = Flags.from_row(stored) if reg.continued else Flags()
        conn.execute(store._upsert(machines_t, ["id"]), [{
            "id": reg.machine.id, "name": name, "state": "live", "identity": list(identity), "info": info,
            "labels": effective_labels(labels, flags.operator_labels) if reg.continued else dict(labels),
            "key_fingerprint": key, "registered_at": stored["registered_at"] if reg.continued else now,
            "last_heartbeat": now, "state_since": now, **flags.columns()}])
        conn.execute(store._upsert(holdings_t, ["machine_id"]),
                     [{"machine_id": reg.machine.id, "replica": lease.name, "since": now}])
        cursor = conn.execute(sa.select(cursors_t.c.stream, cursors_t.c.seq).where(
            cursors_t.c.machine_id == reg.machine.id)).first()
    return Taken(None, before, stored, reg.machine.id, tuple(cursor) if cursor else None)


@_translated
def machine_rows(store: Store, *, ids: list[str] | None = None, name: str | None = None) -> list[dict]:
    """Stored machine rows (by id, or the one of a name), each with ``held_by``: the
    replica holding it ("" none)."""
    q = sa.select(machines_t, sa.func.coalesce(holdings_t.c.replica, "").label("held_by")).select_from(
        machines_t.outerjoin(holdings_t, holdings_t.c.machine_id == machines_t.c.id))
    if ids is not None:
        q = q.where(machines_t.c.id.in_(ids))
    if name is not None:
        q = q.where(machines_t.c.name == name)
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


@_translated
def save_flags(store: Store, machine_id: str, columns: dict) -> None:
    """Write a machine's operator columns (and its effective labels) and tell every replica."""
    values = {k: v for k, v in columns.items() if k in OPERATOR_COLUMNS or k == "labels"}
    with store.engine.begin() as conn:
        conn.execute(machines_t.update().where(machines_t.c.id == machine_id).values(**values))
        conn.execute(sa.select(sa.func.pg_notify(MACHINES_CHANNEL, machine_id)))
