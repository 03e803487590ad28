"""Timestamps on the wire and in JSON output: ISO 8601, UTC, milliseconds."""

from __future__ import annotations

from datetime import datetime, timezone

_UTC = timezone.utc
_from_timestamp = datetime.fromtimestamp
#: "YYYY-MM-DDTHH:MM:" by (year, month, day, hour, minute): most timestamps of an answer share
#: a few minutes (``machines ls`` formats two per machine: 10,000 machines, 20,000 of them).
_MINUTES: dict[tuple, str] = {}
_MINUTES_KEPT = 4096


def iso(ts: float | None) -> str | None:
    """``2027-01-15T08:00:00.123Z``: what ``datetime.isoformat(timespec="milliseconds")`` writes
    in UTC (rounded to the microsecond as ``datetime`` rounds, then truncated), at half its cost."""
    if ts is None:
        return None
    d = _from_timestamp(ts, _UTC)
    key = (d.year, d.month, d.day, d.hour, d.minute)
    prefix = _MINUTES.get(key)
    if prefix is None:
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        prefix = _MINUTES[key] = "%04d-%02d-%02dT%02d:%02d:" % key
    return "%s%02d.%03dZ" % (prefix, d.second, d.microsecond // 1000)


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
