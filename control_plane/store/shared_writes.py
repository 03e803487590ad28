"""How a replica's store writer writes machine rows on a shared Postgres.

Apart from ``replicas.py`` so that ``db.py`` (the writer's transaction) can use
it without importing the replica functions, which import ``db``.

* a row held by another replica is left alone: a stale write of a machine that
  moved on (its agent reconnected there) must not undo what that replica wrote;
* a row is never inserted under a name another replica's machine holds now;
* the operator columns (drain, operator labels) are not written here at all:
  ``replicas.save_flags`` writes them, on the replica an operator asked.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from .models import HoldingRow, MachineRow

#: Columns only ``replicas.save_flags`` writes on a shared store (what operators set).
OPERATOR_COLUMNS = ("drained", "drain_reason", "drained_by", "drained_at", "auto_drained", "operator_labels")

machines_t = MachineRow.__table__
holdings_t = HoldingRow.__table__


def write_machines(conn, me: str, rows: list[dict]) -> None:
    """The store writer's machine upserts on a shared store, as replica ``me``."""
    other = sa.exists().where(holdings_t.c.machine_id == machines_t.c.id, holdings_t.c.replica != me)
    names_taken = set(conn.execute(sa.select(machines_t.c.name).where(
        machines_t.c.name.in_([r["name"] for r in rows]), other,
        machines_t.c.id.not_in([r["id"] for r in rows]))).scalars())
    rows = [r for r in rows if r["name"] not in names_taken]  # another replica's machine has the name now
    if not rows:
        return
    conn.execute(machines_t.delete().where(
        machines_t.c.name.in_([r["name"] for r in rows]), machines_t.c.id.not_in([r["id"] for r in rows]),
        ~other))
    stmt = insert(machines_t)
    updates = {c.name: stmt.excluded[c.name] for c in machines_t.columns
               if c.name != "id" and c.name not in OPERATOR_COLUMNS}
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=updates, where=~other), rows)
