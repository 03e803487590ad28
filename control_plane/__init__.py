"""The Centrality control plane: one asyncio process holding the SSH server,
the machine registry (lifecycle), the operator request handlers, the store
writer and the sweeper. ``store/`` is the database layer (SQLAlchemy 2)."""
