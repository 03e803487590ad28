"""Shared pytest configuration for the Centrality test suite.

The real-infrastructure fixtures (a throw-away PostgreSQL server, OpenSSH
``sshd`` test hosts) live in ``tests/fixtures`` and are registered here.
"""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.sshd"]
