"""ISO timestamps of answers: exactly what ``datetime.isoformat`` writes, in UTC, to the millisecond."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from centrality_core import timefmt


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("ts,text", [
    (0, "1970-01-01T00:00:00.000Z"),
    (1_800_000_000.5, "2027-01-15T08:00:00.500Z"),
    (1_800_000_000.9999996, "2027-01-15T08:00:01.000Z"),  # rounded to the microsecond first, as datetime does
    (1_800_000_059.9994, "2027-01-15T08:00:59.999Z"),  # then truncated to the millisecond
    (951_782_400.25, "2000-02-29T00:00:00.250Z"),
])
def test_known_timestamps(ts, text):
    assert timefmt.iso(ts) == text == reference(ts)


def test_agrees_with_datetime_everywhere():
    rng = random.Random(7)
    values = [rng.uniform(0, 4e9) for _ in range(20_000)] + [rng.randint(0, 4 * 10**9) / 1000 for _ in range(20_000)]
    values += [1_800_000_000 + i / 7 for i in range(5_000)]  # many in the same minutes
    assert [timefmt.iso(v) for v in values] == [reference(v) for v in values]
    assert timefmt.iso(None) is None
    assert len(timefmt._MINUTES) <= timefmt._MINUTES_KEPT


def test_parse_reads_what_iso_writes():
    assert timefmt.parse_iso(timefmt.iso(1_800_000_000.25)) == 1_800_000_000.25
