"""Metrics: raw batches, 1-minute rollups, per-machine replay cursors.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_id", sa.String(32), nullable=False),
        sa.Column("ts_first", sa.Float, nullable=False),
        sa.Column("ts_last", sa.Float, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_metric_batches_machine_ts", "metric_batches", ["machine_id", "ts_last"])
    op.create_index("ix_metric_batches_ts", "metric_batches", ["ts_last"])
    op.create_table(
        "metric_rollups",
        sa.Column("machine_id", sa.String(32), primary_key=True),
        sa.Column("minute", sa.Float, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_metric_rollups_ts", "metric_rollups", ["minute"])
    op.create_table(
        "metric_cursors",
        sa.Column("machine_id", sa.String(32), primary_key=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("metric_cursors", "metric_rollups", "metric_batches"):
        op.drop_table(table)
