"""The metrics pipeline of the control plane.

For each batch an agent sends: check its shape and times, drop it if it was
already stored (per-machine cursor of agent run + sequence number), keep the
latest values in memory (what ``top`` and the dashboard read), fold it into
the 1-minute rollups being built, and queue it for the store. The agent gets
``metrics_ack`` once the batch is durably written, and replays anything not
acknowledged after a reconnect: every sample is stored exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from centrality_core import protocol as p
from centrality_core.summary import EMPTY, Summary, select, summarize
from centrality_core.timefmt import iso


if TYPE_CHECKING:  # pragma: no cover
    from .server import ControlPlane

log = logging.getLogger("centrality.metrics")

#: Samples stamped further than this from the control plane's clock are dropped.
MAX_FUTURE_S = 300.0
MAX_PAST_S = 7 * 86400.0
#: A minute's rollup is written this long after the minute ends (late samples
#: arriving after that are merged into the stored row).
ROLLUP_GRACE_S = 30.0


@dataclass
class Latest:
    """The newest values of one machine, served from memory."""

    ts: float = 0.0
    values: dict[str, float] = field(default_factory=dict)
    summary: Summary = EMPTY
    text: dict[str, str] = field(default_factory=dict)
    text_ts: float = 0.0
    dropped: int = 0  # samples the agent reported dropping, in total


class Rollups:
    """1-minute min/max/sum/count per machine and key, built in memory."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, float], dict[str, list]] = {}

    def add(self, machine_id: str, ts: list[float], keys: list[str], columns: list[list]) -> None:
        first = ts[0] - ts[0] % 60
        if all(first <= t < first + 60 for t in ts):  # the usual case: one minute
            groups = [(first, None)]
        else:
            minutes = [t - t % 60 for t in ts]
            groups = [(m, [i for i, x in enumerate(minutes) if x == m]) for m in set(minutes)]
        for minute, idx in groups:
            bucket = self.buckets.setdefault((machine_id, minute), {})
            for key, col in zip(keys, columns):
                vals = col if idx is None else [col[i] for i in idx]
                if None in vals:
                    vals = [v for v in vals if v is not None]
                    if not vals:
                        continue
                lo, hi = min(vals), max(vals)
                stats = bucket.get(key)
                if stats is None:
                    bucket[key] = [lo, hi, sum(vals), len(vals)]
                else:
                    if lo < stats[0]:
                        stats[0] = lo
                    if hi > stats[1]:
                        stats[1] = hi
                    stats[2] += sum(vals)
                    stats[3] += len(vals)

    def take_closed(self, now: float, grace: float = ROLLUP_GRACE_S) -> list[dict]:
        """Remove and return the minutes that ended at least ``grace`` seconds ago."""
        closed = [k for k in self.buckets if k[1] + 60 + grace <= now]
        return [{"machine_id": mid, "minute": minute, "stats": self.buckets.pop((mid, minute))}
                for mid, minute in closed]


class Metrics:
    def __init__(self, cp: ControlPlane, clock: Callable[[], float] = time.time) -> None:
        self.cp = cp
        self.clock = clock
        self.cursors: dict[str, tuple[str, int]] = {}
        self.latest: dict[str, Latest] = {}
        self.rollups = Rollups()
        self.samples_stored = 0
        self.duplicates = 0
        #: (stored at, seconds from the sample's timestamp to its batch being stored).
        self.lag: deque[tuple[float, float]] = deque(maxlen=200_000)

    def load(self, cursors: dict[str, tuple[str, int]]) -> None:
        self.cursors = dict(cursors)

    # ------------------------------------------------------------------ ingest

    def received(self, session: Any, name: str, machine_id: str, batch: p.MetricsBatch) -> str | None:
        """Take one batch. Returns a protocol-error reason when it is malformed."""
        problem = batch.check_shape()
        if problem:
            return f"metrics batch {batch.seq}: {problem}"
        if not all(math.isfinite(t) for t in batch.ts):
            return f"metrics batch {batch.seq}: timestamps must be finite"
        ack = lambda: session.send(p.MetricsAck(stream=batch.stream, seq=batch.seq))  # noqa: E731
        cursor = self.cursors.get(machine_id)
        if cursor is not None and cursor[0] == batch.stream and batch.seq <= cursor[1]:
            self.duplicates += 1
            self.cp.writer.after_flush(ack)  # it is stored, or about to be
            return None
        self.cursors[machine_id] = (batch.stream, batch.seq)
        now = self.clock()
        if not batch.ts or any(t > now + MAX_FUTURE_S or t < now - MAX_PAST_S for t in batch.ts):
            if batch.ts:
                log.warning("%s: batch %d has samples outside [-7d, +5m] of our clock; dropped",
                            name, batch.seq)
            self.cp.writer.add_metric_batch(*self._rows(machine_id, batch, store=False))
            self.cp.writer.after_flush(ack)
            return None
        self._update_latest(name, batch)
        self.cp.changes.touch(name)
        self.rollups.add(machine_id, batch.ts, batch.keys, batch.columns)
        self.cp.writer.add_metric_batch(*self._rows(machine_id, batch))

        def stored() -> None:
            now = self.clock()
            self.lag.extend((now, now - t) for t in batch.ts)
            ack()

        self.cp.writer.after_flush(stored)
        self.samples_stored += len(batch.ts)
        return None

    def _rows(self, machine_id: str, batch: p.MetricsBatch, store: bool = True):
        cursor = {"machine_id": machine_id, "stream": batch.stream, "seq": batch.seq}
        if not store:
            return None, cursor
        payload = msgspec.json.encode({"ts": batch.ts, "keys": batch.keys, "columns": batch.columns})
        return ({"machine_id": machine_id, "ts_first": min(batch.ts), "ts_last": max(batch.ts),
                 "payload": payload}, cursor)

    def _update_latest(self, name: str, batch: p.MetricsBatch) -> None:
        latest = self.latest.get(name)
        if latest is None:
            latest = self.latest[name] = Latest()
        last = max(range(len(batch.ts)), key=batch.ts.__getitem__)
        if batch.ts[last] >= latest.ts:
            values = {}
            for key, col in zip(batch.keys, batch.columns):
                v = col[last]
                if v is not None:
                    values[key] = v
            latest.ts, latest.values, latest.summary = batch.ts[last], values, summarize(values)
        if batch.text:
            latest.text.update(batch.text)
            latest.text_ts = batch.ts[last]
        latest.dropped += batch.dropped

    def lag_percentiles(self, window: float = 30.0) -> dict[str, float | None]:
        """p50/p99 of sample-to-stored delay of the samples stored in the last ``window`` seconds."""
        since = self.clock() - window
        ordered = sorted(lag for at, lag in self.lag if at >= since)
        if not ordered:
            return {"p50_s": None, "p99_s": None}
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
        return {"p50_s": pick(0.50), "p99_s": pick(0.99)}

    def flush_rollups(self, now: float | None = None) -> int:
        rows = self.rollups.take_closed(self.clock() if now is None else now)
        if rows:
            self.cp.writer.add_rollups(rows)
        return len(rows)

    # ------------------------------------------------------------------ queries

    async def query(self, machine_id: str, since: float, until: float, patterns: list[str] | None,
                    resolution: str) -> list[dict]:
        """Samples as ``[{"ts": ISO, key: value, ...}]``, raw or 1-minute rollups."""
        if resolution == "1m":
            rows = await self.cp.db(self.cp.store.metric_rollups, machine_id, since, until)
            return [_rollup_row(minute, msgspec.json.decode(payload), patterns) for minute, payload in rows]
        payloads = await self.cp.db(self.cp.store.metric_batches, machine_id, since, until)
        out = []
        for payload in payloads:
            b = msgspec.json.decode(payload)
            wanted = set(select(b["keys"], patterns))
            cols = [(k, c) for k, c in zip(b["keys"], b["columns"]) if k in wanted]
            for i, t in enumerate(b["ts"]):
                if since <= t <= until:
                    row = {"ts": iso(t)}
                    row.update((k, c[i]) for k, c in cols if c[i] is not None)
                    out.append(row)
        out.sort(key=lambda r: r["ts"])
        return out


def _rollup_row(minute: float, stats: dict[str, list], patterns: list[str] | None) -> dict:
    row: dict[str, Any] = {"ts": iso(minute)}
    for key in select(stats, patterns):
        mn, mx, total, n = stats[key]
        row[key] = total / n
        row[f"{key}:min"] = mn
        row[f"{key}:max"] = mx
    return row
