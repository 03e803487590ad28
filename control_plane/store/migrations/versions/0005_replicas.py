"""Replicas: a lease per control-plane replica and which replica holds which machine.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("lease_expires", sa.Float, nullable=False),
        sa.Column("reaped_at", sa.Float, nullable=True),
    )
    op.create_table(
        "replica_holdings",
        sa.Column("machine_id", sa.String(32), primary_key=True),
        sa.Column("replica", sa.String(63), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
    )
    op.create_index("ix_replica_holdings_replica", "replica_holdings", ["replica"])


def downgrade() -> None:
    op.drop_index("ix_replica_holdings_replica", "replica_holdings")
    op.drop_table("replica_holdings")
    op.drop_table("replicas")
