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
from typing import TYPE_CHECKING, Any, Callable

import msgspec
import numpy as np

from centrality_core import protocol as p
from centrality_core.summary import EMPTY, Summary, select, summarize
from centrality_core.timefmt import iso

from .rollups import Rollups, matrix

if TYPE_CHECKING:  # pragma: no cover
    from .server import ControlPlane

log = logging.getLogger("centrality.metrics")

#: Samples stamped further than this from the control plane's clock are dropped.
MAX_FUTURE_S = 300.0
MAX_PAST_S = 7 * 86400.0


class Latest:
    """The newest values of one machine, served from memory.

    Kept compact, for 10,000 machines: the key list is shared by machines of
    the same shape and the values are one float array. ``values`` is built
    when asked for; ``summary`` (the fleet table's figures) when first read.
    """

    __slots__ = ("ts", "keys", "row", "_summary", "text", "text_ts", "dropped")

    def __init__(self) -> None:
        self.ts = 0.0
        self.keys: list[str] = []
        self.row: np.ndarray | None = None
        self._summary: Summary | None = EMPTY
        self.text: dict[str, str] = {}
        self.text_ts = 0.0
        self.dropped = 0  # samples the agent reported dropping, in total

    def set(self, ts: float, keys: list[str], row: np.ndarray) -> None:
        self.ts, self.keys, self.row, self._summary = ts, keys, row, None

    @property
    def values(self) -> dict[str, float]:
        if self.row is None:
            return {}
        return {k: v for k, v in zip(self.keys, self.row.tolist()) if v == v}  # NaN: no value

    @property
    def summary(self) -> Summary:
        if self._summary is None:
            self._summary = summarize(self.values)
        return self._summary


#: At most this many distinct metric names are shared between machines
#: (``Metrics.shared_keys``); past it, key lists are simply not shared.
MAX_SHARED_KEYS = 200_000


class Metrics:
    def __init__(self, cp: ControlPlane, clock: Callable[[], float] = time.time) -> None:
        self.cp = cp
        self.clock = clock
        self.cursors: dict[str, tuple[str, int]] = {}
        self.latest: dict[str, Latest] = {}
        self.rollups = Rollups()
        self._keys: dict[str, list[str]] = {}  # machine id -> its key list (shared)
        self._shapes: dict[tuple[str, ...], list[str]] = {}  # key list -> the one shared copy
        self._shared = 0  # keys held in _shapes
        self.samples_stored = 0
        self.duplicates = 0
        #: (stored at, the batch's sample timestamps): sample-to-stored delays,
        #: computed only when asked for (``lag_percentiles``).
        self.lag: deque[tuple[float, list[float]]] = deque(maxlen=100_000)

    def load(self, cursors: dict[str, tuple[str, int]]) -> None:
        self.cursors = dict(cursors)

    # ------------------------------------------------------------------ ingest

    def received(self, session: Any, name: str, machine_id: str, batch: p.MetricsBatch,
                 frame: bytes) -> str | None:
        """Take one batch (``frame``: its validated bytes, stored as they are).

        Returns a protocol-error reason when it is malformed.
        """
        problem = batch.check_shape()
        if problem:
            return f"metrics batch {batch.seq}: {problem}"
        ts = batch.ts
        if not all(map(math.isfinite, ts)):
            return f"metrics batch {batch.seq}: timestamps must be finite"
        a = (np.frombuffer(batch.values, "<f8").reshape(len(batch.keys), len(ts)) if batch.values
             else matrix(batch.columns, len(ts)))
        if np.isinf(a).any():  # checked before the cursor moves: a refused batch can come back fixed
            return f"metrics batch {batch.seq}: values must be finite (NaN for no value)"
        ack = p.encode(p.MetricsAck(stream=batch.stream, seq=batch.seq))
        send = session.send_bytes
        cursor = self.cursors.get(machine_id)
        if cursor is not None and cursor[0] == batch.stream and batch.seq <= cursor[1]:
            self.duplicates += 1
            self.cp.writer.after_flush(lambda: send(ack))  # it is stored, or about to be
            return None
        self.cursors[machine_id] = (batch.stream, batch.seq)
        cursor_row = {"machine_id": machine_id, "stream": batch.stream, "seq": batch.seq}
        now = self.clock()
        if not ts or max(ts) > now + MAX_FUTURE_S or min(ts) < now - MAX_PAST_S:
            if ts:
                log.warning("%s: batch %d has samples outside [-7d, +5m] of our clock; dropped",
                            name, batch.seq)
            self.cp.writer.add_metric_batch(None, cursor_row)
            self.cp.writer.after_flush(lambda: send(ack))
            return None
        keys = self.shared_keys(machine_id, batch.keys)
        self._update_latest(name, batch, keys, a)
        self.cp.changes.touch(name)
        self.rollups.add(machine_id, ts, keys, a)
        self.cp.writer.add_metric_batch(
            {"machine_id": machine_id, "ts_first": min(ts), "ts_last": max(ts), "payload": frame}, cursor_row)

        def stored() -> None:
            self.lag.append((self.clock(), ts))
            send(ack)

        self.cp.writer.after_flush(stored)
        self.samples_stored += len(ts)
        return None

    def shared_keys(self, machine_id: str, keys: list[str]) -> list[str]:
        """``keys``, as the list already held for an equal one (most batches repeat their
        machine's keys; GPU machines of one model all send the same ones)."""
        prev = self._keys.get(machine_id)
        if prev is not None and prev == keys:
            return prev
        shape = tuple(keys)
        shared = self._shapes.get(shape)
        if shared is None:
            shared = keys
            if self._shared + len(keys) <= MAX_SHARED_KEYS:
                self._shapes[shape] = keys
                self._shared += len(keys)
        self._keys[machine_id] = shared
        return shared

    def _update_latest(self, name: str, batch: p.MetricsBatch, keys: list[str], a: np.ndarray) -> None:
        latest = self.latest.get(name)
        if latest is None:
            latest = self.latest[name] = Latest()
        ts = batch.ts
        newest = max(ts)
        if newest >= latest.ts:
            last = len(ts) - 1 if ts[-1] == newest else ts.index(newest)
            latest.set(newest, keys, a[:, last].copy())
        if batch.text:
            latest.text.update(batch.text)
            latest.text_ts = newest
        latest.dropped += batch.dropped

    def lag_percentiles(self, window: float = 30.0) -> dict[str, float | None]:
        """p50/p99 of sample-to-stored delay of the samples stored in the last ``window`` seconds."""
        since = self.clock() - window
        ordered = sorted(at - t for at, ts in self.lag if at >= since for t in ts)
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
            b = _stored_batch.decode(payload)
            wanted = set(select(b.keys, patterns))
            cols = [(k, c) for k, c in zip(b.keys, b.column_lists()) if k in wanted]
            for i, t in enumerate(b.ts):
                if since <= t <= until:
                    row = {"ts": iso(t)}
                    row.update((k, c[i]) for k, c in cols if c[i] is not None)
                    out.append(row)
        out.sort(key=lambda r: r["ts"])
        return out


class _StoredBatch(msgspec.Struct):
    """A stored batch payload: the agent's ``metrics`` frame (or, written by
    versions before it was stored as received, only ``ts``/``keys``/``columns``)."""

    ts: list[float]
    keys: list[str]
    columns: list[list[float | None]] = []
    values: bytes = b""

    def column_lists(self) -> list[list[float | None]]:
        return p.unpack_values(self.values, len(self.ts)) if self.values else self.columns


_stored_batch = msgspec.json.Decoder(_StoredBatch)


def _rollup_row(minute: float, stats: dict[str, list], patterns: list[str] | None) -> dict:
    row: dict[str, Any] = {"ts": iso(minute)}
    for key in select(stats, patterns):
        mn, mx, total, n = stats[key]
        row[key] = total / n
        row[f"{key}:min"] = mn
        row[f"{key}:max"] = mx
    return row
