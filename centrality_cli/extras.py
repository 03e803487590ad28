"""Which optional dependency set ("extra") a missing module comes from.

``pip install centrality`` brings only what the agent and the operator
commands need. A command that needs more (``server``, ``tui``, ``provision``)
says which extra to install instead of printing an import traceback.
"""

from __future__ import annotations

#: Top-level module -> the extra of pyproject.toml that installs it.
EXTRA_OF = {
    "sqlalchemy": "server", "alembic": "server", "psycopg": "server", "psycopg_binary": "server",
    "numpy": "server", "uvloop": "server",
    "ClusterShell": "exec",
    "textual": "tui", "textual_plotext": "tui", "plotext": "tui",
    "pyinfra": "provision",
    "pynvml": "gpu",
}


def advice(exc: ModuleNotFoundError, command: str) -> str | None:
    """The sentence to print for ``exc`` raised by ``command``; None when no extra provides the module."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return (f"`{command}` needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'centrality[{extra}]'")


def require(command: str, modules: list[str]) -> None:
    """Exit 3 naming the extra when one of ``modules`` is not installed (checked before starting
    anything, for commands that run others: ``demo`` starts a server, then the dashboard)."""
    import importlib.util

    from . import output

    for module in modules:
        if importlib.util.find_spec(module) is None:
            output.fail(advice(ModuleNotFoundError(name=module), command) or f"{module} is not installed", 3,
                        "config")
