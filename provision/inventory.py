"""Load a pyinfra inventory file and apply ``--limit``, exactly as the pyinfra command does.

An inventory is a standard pyinfra ``inventory.py``: every module-level list (or
``(hosts, data)`` tuple) is a group; a host is a name or ``(name, data)`` with
connector data such as ``ssh_hostname``, ``ssh_user``, ``ssh_port``, ``ssh_key``,
plus the ``centrality_*`` keys of ``provision/settings.py``. pyinfra also puts every
host in the group named after the file (``inventories/prod.py``: ``prod``) and loads
``group_data/*.py`` next to the inventory.

Imports pyinfra: only the worker process uses this module.
"""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterable

from centrality_core.errors import UsageError


def load(path: str | Path, *, override_data: dict[str, Any] | None = None):
    """A ``pyinfra.api.Inventory`` from an inventory file; ``UsageError`` if it cannot be loaded."""
    from pyinfra_cli.inventory import make_inventory

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no inventory file {path}")
    if p.suffix != ".py":
        raise UsageError(f"{path}: a pyinfra inventory is a Python file (inventory.py)")
    try:
        inventory = make_inventory(str(p), override_data=override_data or {}, cwd=os.getcwd())
    except Exception as exc:  # noqa: BLE001 - user code: any error is a bad inventory
        cause = getattr(exc, "exception", None) or exc  # pyinfra wraps errors in user files
        raise UsageError(f"cannot load inventory {path}: {type(cause).__name__}: {cause}") from None
    if not len(inventory):
        raise UsageError(f"inventory {path} has no hosts")
    return inventory


def select(inventory, limits: Iterable[str]) -> list | None:
    """Hosts matching any ``--limit`` (a group name, or a host name glob); None: all hosts."""
    limits = [limit for limit in limits if limit]
    if not limits:
        return None
    chosen: list = []
    for limit in limits:
        group = inventory.get_group(limit, default=None)
        hosts = group if group is not None else [h for h in inventory if fnmatch(h.name, limit)]
        if not hosts:
            raise UsageError(f"--limit {limit}: no host or group of that name in the inventory")
        chosen.extend(h for h in hosts if h not in chosen)
    return chosen
