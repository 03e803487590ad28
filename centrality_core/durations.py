"""Durations as people type them: ``90``, ``5s``, ``10m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import math
import re

from .errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse(text: str | float | int) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ``UsageError``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif not isinstance(text, str):
        raise UsageError(f"invalid duration {text!r}: expected seconds or a string like 5s")
    else:
        s = text.strip().lower()
        try:
            seconds = float(s)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(s):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise UsageError(
                    f"invalid duration {text!r}: use a number of seconds or e.g. 5s, 10m, 1h30m, 2d"
                ) from None
    if not math.isfinite(seconds):
        raise UsageError(f"invalid duration {text!r}: must be a finite number of seconds")
    if seconds < 0:
        raise UsageError(f"invalid duration {text!r}: must not be negative")
    return seconds


def format(seconds: float | None) -> str:
    """Short human form: ``4s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
