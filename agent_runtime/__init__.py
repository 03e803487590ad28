"""The Centrality agent: runs on every machine, keeps one SSH connection to the
control plane, registers, heartbeats, sends metrics and runs commands.

Installed on every GPU node, so it imports only light things: the shared core,
asyncssh, msgspec and psutil. Never Textual, SQLAlchemy or pyinfra.
"""
