"""Centrality's shared core: the wire protocol and the pure rules.

Nothing here does I/O or imports anything heavy: the agent runtime, the control
plane and the CLI all build on it.
"""

__version__ = "0.1.0"
