"""Metric history as tiers of chunks: pure conversions, no I/O.

* tier 0, ``raw``: every sample, as agents sent them (rounded to each key's
  precision, ``centrality_core.precision``);
* tier 1, ``1m``: per minute and key, min / max / sum / count;
* tier 2, ``1h``: the same per hour.

Recent data is still in its arrival form (raw batches as the agent's frame,
minutes as JSON rows, both written at once so an agent is acknowledged as soon
as its batch is durable); the compaction pass (``store/chunks.py``) turns
closed windows of them into chunks (``store/tsz.py``). This module turns both
forms into the same series, so a query sees one series whatever is compacted.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Optional, Sequence

import msgspec
import numpy as np

from centrality_core import protocol as p
from centrality_core.precision import digits as key_digits
from centrality_core.summary import select

from .store import tsz

TIERS = ("raw", "1m", "1h")
STEP = {"1m": 60.0, "1h": 3600.0}
_SEP = "\x1f"  # between a key and its statistic in a rollup chunk's row names
_STATS = ("min", "max", "sum", "n")

Stats = dict[str, list]  # key -> [min, max, sum, count]


class StoredBatch(msgspec.Struct):
    """A stored batch payload: the agent's ``metrics`` frame (or, written by
    versions before it was stored as received, only ``ts``/``keys``/``columns``)."""

    ts: list[float]
    keys: list[str]
    columns: list[list[float | None]] = []
    values: bytes = b""
    text: dict[str, str] = {}

    def column_lists(self) -> list[list[float | None]]:
        return p.unpack_values(self.values, len(self.ts)) if self.values else self.columns

    def matrix(self) -> np.ndarray:
        n = len(self.ts)
        if self.values:
            return np.frombuffer(self.values, "<f8").reshape(len(self.keys), n)  # read-only view
        return np.array([[np.nan if v is None else v for v in c] for c in self.columns],
                        np.float64).reshape(len(self.keys), n)


_stored_batch = msgspec.json.Decoder(StoredBatch)


def decode_batch(payload: bytes) -> StoredBatch:
    return _stored_batch.decode(payload)


def batches_chunk(payloads: Iterable[bytes], **encode_args) -> tuple[bytes, float, float, int]:
    """Raw batch payloads as one tier-0 chunk: ``(chunk, ts_first, ts_last, values held)``."""
    parts, text = [], []
    for payload in payloads:
        b = decode_batch(payload)
        if not b.ts:
            continue
        parts.append((b.ts, b.keys, b.matrix()))
        text.extend((max(b.ts), k, v) for k, v in b.text.items())
    ts, keys, values = tsz.merge(parts)
    blob = tsz.encode(ts, keys, values, text, **encode_args)
    return blob, float(ts.min()), float(ts.max()), int((~np.isnan(values)).sum())


# ------------------------------------------------------------------ rollup chunks

def _stat_digits(row: str) -> int | None:
    key, _, stat = row.rpartition(_SEP)
    return 0 if stat == "n" else key_digits(key)


def stats_chunk(points: Sequence[tuple[float, Stats]], **encode_args) -> tuple[bytes, int]:
    """Rollup points ``[(start, {key: [min, max, sum, count]})]`` as one chunk
    (four rows per key); returns it and the number of key-points it holds."""
    index: dict[str, int] = {}
    for _, stats in points:
        for key in stats:
            index.setdefault(key, len(index))
    keys = list(index)
    values = np.full((4 * len(keys), len(points)), np.nan)
    held = 0
    for i, (_, stats) in enumerate(points):
        held += len(stats)
        for key, s in stats.items():
            j = 4 * index[key]
            values[j:j + 4, i] = s
    rows = [f"{k}{_SEP}{s}" for k in keys for s in _STATS]
    blob = tsz.encode([t for t, _ in points], rows, values, digits=_stat_digits, **encode_args)
    return blob, held


def chunk_stats(blob: bytes) -> list[tuple[float, Stats]]:
    """``stats_chunk`` undone."""
    c = tsz.decode(blob)
    keys = [r.rpartition(_SEP)[0] for r in c.keys[::4]]
    out = []
    v = c.values
    for i, t in enumerate(c.ts.tolist()):
        col = v[:, i].reshape(-1, 4).tolist()
        stats = {k: [mn, mx, total, int(n)] for k, (mn, mx, total, n) in zip(keys, col) if n == n and n > 0}
        out.append((t, stats))
    return out


def merge_stats(a: Stats, b: Stats) -> Stats:
    """Combine two ``{key: [min, max, sum, count]}`` maps."""
    out = dict(a)
    for key, (mn, mx, total, n) in b.items():
        s = out.get(key)
        out[key] = [mn, mx, total, n] if s is None else [min(s[0], mn), max(s[1], mx), s[2] + total, s[3] + n]
    return out


def coarsen(points: Iterable[tuple[float, Stats]], step: float) -> list[tuple[float, Stats]]:
    """Rollup points merged into ``step``-second buckets (minutes into hours), in time order."""
    buckets: dict[float, Stats] = {}
    for t, stats in points:
        start = t - t % step
        buckets[start] = merge_stats(buckets[start], stats) if start in buckets else dict(stats)
    return sorted(buckets.items())


# ------------------------------------------------------------------ query rows

@lru_cache(maxsize=256)
def row_type(names: tuple[str, ...]) -> type:
    """The row of a window with these keys: a msgspec Struct (``ts``, then one
    optional float per key, encoded under the key's name, left out when None).

    A window of a GPU node is ~1 million values; as Structs its rows are built
    and encoded in C, where a dict per row costs ~150 ns per value in Python.
    ``msgspec.to_builtins`` turns rows into the usual dicts."""
    fields = [("ts", str), *((f"v{i}", Optional[float], None) for i in range(len(names)))]
    return msgspec.defstruct("Row", fields, rename={f"v{i}": n for i, n in enumerate(names)},
                             omit_defaults=True, module=__name__)


def iso_ms(t: np.ndarray) -> list[str]:
    """Times (s) as ISO 8601 UTC strings to the millisecond, like ``timefmt.iso``, in one go."""
    ms = np.round(np.asarray(t, np.float64) * 1000.0).astype(np.int64).astype("datetime64[ms]")
    return np.datetime_as_string(ms, unit="ms", timezone="UTC").tolist()


def _rows(out: list, t: np.ndarray, names: list[str], v: np.ndarray) -> None:
    """Append ``(time, row)`` per column of ``v`` (names x times), gaps left out."""
    row = row_type(tuple(names))
    gaps = np.isnan(v).any(axis=0).tolist()
    for tt, stamp, col, gap in zip(t.tolist(), iso_ms(t), v.T.tolist(), gaps):
        out.append((tt, row(stamp, *([None if x != x else x for x in col] if gap else col))))


def as_dicts(rows: list) -> list[dict]:
    """Rows of ``query`` as ``[{"ts": ISO, key: value}]``."""
    return msgspec.to_builtins(rows)


def raw_rows(series: Iterable[tuple[np.ndarray, list[str], np.ndarray, bool]], since: float, until: float,
             patterns: list[str] | None) -> list[dict]:
    """Samples of chunks and batches ``(ts, keys, values, at_precision)`` as
    ``[{"ts": ISO, key: value}]`` in time order, each value at its stored precision
    (batches not compacted yet are rounded here, as compaction will)."""
    out: list[tuple[float, dict]] = []
    for ts, keys, values, at_precision in series:
        t = np.asarray(ts, np.float64)
        inside = (t >= since) & (t <= until)
        if not inside.any():
            continue
        chosen = set(select(keys, patterns))
        wanted = [i for i, k in enumerate(keys) if k in chosen]
        if not wanted:
            continue
        names = [keys[i] for i in wanted]
        v = values[wanted][:, inside]
        if at_precision:
            _rows(out, t[inside], names, v)
        else:  # not compacted yet: as compaction will keep it (times to the ms, values rounded)
            _rows(out, tsz.quantize_ts(t[inside]), names, tsz.quantize(names, v))
    out.sort(key=lambda r: r[0])
    return [row for _, row in out]


def _stat_rows(patterns: list[str] | None):
    """For ``tsz.decode``: the rows of a rollup chunk whose key ``patterns`` select."""
    def only(rows: list[str]) -> list[str]:
        keys = [r.rpartition(_SEP)[0] for r in rows[::4]]
        chosen = set(select(keys, patterns))
        return [r for r in rows if r.rpartition(_SEP)[0] in chosen]
    return only


def stats_arrays(blob: bytes, patterns: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A rollup chunk as arrays: times, keys and ``stats[4, key, time]`` (min, max, sum, count),
    of the keys ``patterns`` select (all by default)."""
    c = tsz.decode(blob, _stat_rows(patterns) if patterns else None)
    keys = [r.rpartition(_SEP)[0] for r in c.keys[::4]]
    return c.ts, keys, c.values.reshape(len(keys), 4, len(c.ts)).transpose(1, 0, 2)


def rollup_matrix_rows(series: list[tuple[np.ndarray, list[str], np.ndarray]], since: float, until: float,
                       patterns: list[str] | None) -> list[dict]:
    """``rollup_rows`` of ``stats_arrays`` series, without a dict per point and key
    (a day of a GPU node's minutes is 1,440 x 214 keys)."""
    stamps = np.concatenate([t for t, _, _ in series]) if series else np.zeros(0)
    if len(np.unique(stamps)) != len(stamps):  # a minute in two chunks (late samples): merge them
        points = [(t, {k: [mn, mx, sm, int(n)] for k, (mn, mx, sm, n) in zip(keys, col) if n == n and n > 0})
                  for ts, keys, st in series for t, col in zip(ts.tolist(), st.transpose(2, 1, 0).tolist())]
        return rollup_rows(points, since, until, patterns)
    out: list[tuple[float, dict]] = []
    for ts, keys, st in series:
        inside = (ts >= since) & (ts <= until)
        chosen = set(select(keys, patterns))
        wanted = [i for i, k in enumerate(keys) if k in chosen]
        if not wanted or not inside.any():
            continue
        mn, mx, sm, n = st[:, wanted][:, :, inside]
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = np.where(n > 0, sm / n, np.nan)
        v = np.stack([avg, np.where(n > 0, mn, np.nan), np.where(n > 0, mx, np.nan)], axis=1).reshape(-1, avg.shape[1])
        names = [name for i in wanted for name in (keys[i], f"{keys[i]}:min", f"{keys[i]}:max")]
        _rows(out, ts[inside], names, v)
    out.sort(key=lambda r: r[0])
    return [row for _, row in out]


def rollup_rows(points: Iterable[tuple[float, Stats]], since: float, until: float,
                patterns: list[str] | None) -> list[dict]:
    """Rollup points (possibly two for one start: merged) as ``[{"ts", key: avg, key:min, key:max}]``."""
    merged: dict[float, Stats] = {}
    for t, stats in points:
        if since <= t <= until:
            merged[t] = merge_stats(merged[t], stats) if t in merged else stats
    out = []
    for t in sorted(merged):
        stats = merged[t]
        names, values = [], []
        for key in select(stats, patterns):
            mn, mx, total, n = stats[key]
            names += (key, f"{key}:min", f"{key}:max")
            values += (total / n, mn, mx)
        out.append(row_type(tuple(names))(iso_ms(np.array([t]))[0], *values))
    return out


def pick_resolution(span: float, age: float, retention: dict[str, float]) -> str:
    """The tier ``auto`` reads for a window ``span`` seconds long starting ``age``
    seconds ago: the finest one that holds the window's start and gives at most
    a few thousand points (raw up to 2 h, minutes up to 7 days, hours beyond)."""
    if span <= 2 * 3600 and age <= retention["raw"]:
        return "raw"
    if span <= 7 * 86400 and age <= retention["1m"]:
        return "1m"
    return "1h"


# ------------------------------------------------------------------ reading a window

def query(store: Any, chunks: Any, machine_id: str, since: float, until: float,
          patterns: list[str] | None, resolution: str) -> list[dict]:
    """One machine's window at ``resolution`` (``raw``, ``1m``, ``1h``), from the
    chunks of its tier and what is not compacted yet, as one series. Blocking:
    run it in a worker thread."""
    if resolution == "raw":
        series = []
        only = (lambda keys: select(keys, patterns)) if patterns else None
        for blob in chunks.read(machine_id, 0, since, until):
            c = tsz.decode(blob, only)
            series.append((c.ts, c.keys, c.values, True))
        for payload in store.metric_batches(machine_id, since, until):
            b = decode_batch(payload)
            series.append((b.ts, b.keys, b.matrix(), False))
        return raw_rows(series, since, until, patterns)
    if resolution == "1m":
        series = [stats_arrays(blob, patterns) for blob in chunks.read(machine_id, 1, since, until)]
        recent = _recent_minutes(store, machine_id, since, until)
        if recent:
            series.append(stats_arrays(recent, patterns))
        return rollup_matrix_rows(series, since, until, patterns)
    hours = [pt for blob in chunks.read(machine_id, 2, since, until) for pt in chunk_stats(blob)]
    covered = max((t for t, _ in hours), default=since - 3600.0) + 3600.0  # hours not yet in tier 2
    if covered <= until:
        hours += coarsen(_minutes(store, chunks, machine_id, covered, until), 3600.0)
    return rollup_rows(hours, since - since % 3600.0, until, patterns)


def _recent_minutes(store: Any, machine_id: str, since: float, until: float) -> bytes | None:
    """The minutes not compacted yet (the last hour or so), through the chunk format
    so that they read at the stored precision, as they will once compacted."""
    recent = [(minute, msgspec.json.decode(payload)) for minute, payload in
              store.metric_rollups(machine_id, since, until)]
    return stats_chunk(recent, codec="none")[0] if recent else None


def _minutes(store: Any, chunks: Any, machine_id: str, since: float, until: float) -> list[tuple[float, Stats]]:
    points = [pt for blob in chunks.read(machine_id, 1, since, until) for pt in chunk_stats(blob)]
    recent = _recent_minutes(store, machine_id, since, until)
    return points + chunk_stats(recent) if recent else points
