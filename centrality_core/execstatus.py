"""How a machine's end of an ``exec`` is worded, the same in the CLI and the dashboard.

``describe_exit`` takes an ``ExecExit`` document (``centrality_core.documents``):
``exit 3``, ``killed by signal 9``, ``timed out after 1s``, ``unreachable
(connection lost)``. Pure.
"""

from __future__ import annotations

from .documents import ExecExit
from .sanitize import one_line

STATUS_TEXT = {"ok": "ok", "failed": "failed", "killed": "killed", "timeout": "timed out",
               "cancelled": "cancelled", "unreachable": "unreachable"}


def describe_exit(e: ExecExit) -> str:
    status = e.status
    if status == "failed":
        text = f"exit {e.exit_code}"
    elif status == "killed":
        text = f"killed by signal {e.signal}"
    else:
        text = STATUS_TEXT.get(status, str(status))
    error = one_line(str(e.error), 200) if e.error else ""
    if error.startswith(text):  # "timed out after 1s", not "timed out (timed out after 1s)"
        return error
    return f"{text} ({error})" if error else text
