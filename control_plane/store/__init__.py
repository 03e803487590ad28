"""The store: SQLAlchemy 2 models, Alembic migrations and the queries the
control plane needs. SQLite (WAL) is the embedded default; Postgres via
psycopg 3 for real deployments. Only the control plane imports this."""

from .db import Store

__all__ = ["Store"]
