"""Replica peering: each replica records how its peers reach it and trust it.

``host_fingerprint`` is the host key a peer pins when it dials the replica's
``address``; ``peer_key`` is the OpenSSH public key the replica logs in to its
peers with (the ``replica`` role). Both are written by the replica at start.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("host_fingerprint", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("peer_key", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("peer_fingerprint", sa.String(128), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("peer_fingerprint")
        batch.drop_column("peer_key")
        batch.drop_column("host_fingerprint")
