"""Operator requests: SSH exec commands named like the CLI commands, answered in JSON.

``ssh -p 8022 HOST machines ls`` runs the ``machines ls`` request. Each
request is a coroutine registered with ``@request``, which declares whether
it changes anything (operator keys only) or only reads (viewers too), and
its arguments (argparse). ``--json`` is accepted everywhere and changes
nothing: the answer is always one JSON document on stdout, or a JSON error
``{"error": CODE, "reason": TEXT}`` on stderr with a non-zero exit status.
"""

from .dispatch import REQUESTS, Ctx, Reply, handle, request

# Register the request modules.
from . import copy, exec, fleetops, gpus, help, keys, machines, metrics, shell, status, storage, subscribe, tokens  # noqa: F401

__all__ = ["REQUESTS", "Ctx", "Reply", "handle", "request"]
