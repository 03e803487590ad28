"""Commands: machine flags (drained, unhealthy + check results, operator labels) and the exec audit.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines") as batch:
        batch.add_column(sa.Column("drained", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("drain_reason", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("drained_by", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("drained_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("auto_drained", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("unhealthy", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("health", sa.JSON, nullable=True))
        batch.add_column(sa.Column("health_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("operator_labels", sa.JSON, nullable=True))
    op.create_table(
        "exec_audit",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("argv", sa.JSON, nullable=False),
        sa.Column("selector", sa.Text, nullable=False),
        sa.Column("machines", sa.JSON, nullable=False),
        sa.Column("skipped", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
    )
    op.create_index("ix_exec_audit_started", "exec_audit", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_exec_audit_started", "exec_audit")
    op.drop_table("exec_audit")
    with op.batch_alter_table("machines") as batch:
        for column in ("operator_labels", "health_at", "health", "unhealthy", "auto_drained",
                       "drained_at", "drained_by", "drain_reason", "drained"):
            batch.drop_column(column)
