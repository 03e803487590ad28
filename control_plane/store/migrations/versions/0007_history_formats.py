"""History in forms earlier versions cannot read.

From this revision ``metric_batches`` holds batches in their staged form
(``staged.MAGIC``) and ``metric_rollups`` minutes in theirs
(``staged.MINUTE_MAGIC``), which no version before the staged forms can
decode. Nothing in the schema changes: the revision is the mark. A control
plane that does not know it refuses the store at start ("migrated by a newer
centrality") instead of failing later on rows it cannot read; versions that
predate that check stop with Alembic's "Can't locate revision".

Downgrade rewrites the staged rows in the JSON those versions read: a batch
as ``{"ts", "keys", "columns", "text"}`` (``null`` for no value), a minute as
``{key: [min, max, sum, count]}``. Compacted chunks are unchanged either way.

Revision ID: 0007
Revises: 0006
"""

import msgspec
import numpy as np
import sqlalchemy as sa
from alembic import op

from control_plane.store import staged

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PAGE = 2000


def upgrade() -> None:
    pass


def _batch_json(payload: bytes) -> bytes:
    b = staged.decode(payload)
    columns = [[None if np.isnan(v) else v for v in row] for row in b.values.tolist()]
    return msgspec.json.encode({"ts": b.ts.tolist(), "keys": b.keys, "columns": columns, "text": b.text})


def _minute_json(payload: bytes) -> bytes:
    return msgspec.json.encode(staged.decode_minute(payload).as_dict())


def _rewrite(conn, table: sa.Table, key: list[sa.Column], magic: bytes, to_json) -> None:
    """Every row of ``table`` whose payload starts with ``magic``, rewritten, a page at a time."""
    staged_rows = sa.func.substr(table.c.payload, 1, len(magic)) == magic
    after = None
    while True:
        q = sa.select(*key, table.c.payload).where(staged_rows).order_by(*key).limit(PAGE)
        if after is not None:
            q = q.where(sa.tuple_(*key) > sa.tuple_(*after))
        rows = conn.execute(q).all()
        if not rows:
            return
        where = sa.and_(*[c == sa.bindparam(f"k_{c.name}") for c in key])
        conn.execute(table.update().where(where).values(payload=sa.bindparam("new_payload")),
                     [{**{f"k_{c.name}": r[i] for i, c in enumerate(key)}, "new_payload": to_json(r[-1])}
                      for r in rows])
        after = rows[-1][:-1]


def downgrade() -> None:
    conn = op.get_bind()
    meta = sa.MetaData()
    batches = sa.Table("metric_batches", meta, sa.Column("id", sa.Integer), sa.Column("payload", sa.LargeBinary))
    rollups = sa.Table("metric_rollups", meta, sa.Column("machine_id", sa.String(32)),
                       sa.Column("minute", sa.Float), sa.Column("payload", sa.LargeBinary))
    _rewrite(conn, batches, [batches.c.id], staged.MAGIC, _batch_json)
    _rewrite(conn, rollups, [rollups.c.machine_id, rollups.c.minute], staged.MINUTE_MAGIC, _minute_json)
