"""The one place agent-supplied text is made safe: right after a message is decoded.

Every string an agent sends (names, hostnames and other machine info, labels,
health details, command output, error reasons, nvidia-smi screens) may reach
an operator's terminal, a log line, the store or another tool. ``clean`` runs
``centrality_core.sanitize.for_terminal`` over every string field of a
decoded message, recursively, so nothing downstream sees an escape sequence,
a control character (newline and tab excepted) or a bidi control.

Metric batches are the hot path and are not walked here: their keys are
identifiers and are refused when unsafe (``ingest.py``, checked once per new
key list), and their text streams and GPU process lists are cleaned there.
"""

from __future__ import annotations

from typing import Any

from centrality_core import sanitize
from centrality_core.sanitize import for_terminal


def clean(value: Any) -> Any:
    """``value`` with every string in it sanitised (Structs are changed in place)."""
    return sanitize.clean(value)


def clean_text(text: dict[str, str]) -> dict[str, str]:
    """A metric batch's text streams, sanitised."""
    return {for_terminal(k, keep_newlines=False): for_terminal(v) for k, v in text.items()}
