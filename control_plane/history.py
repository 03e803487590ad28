"""Metric history as tiers of chunks: pure conversions, no I/O.

* tier 0, ``raw``: every sample, as agents sent them (rounded to each key's
  precision, ``centrality_core.precision``);
* tier 1, ``1m``: per minute and key, min / max / sum / count;
* tier 2, ``1h``: the same per hour.

Recent data is still in its arrival form (raw batches staged as received,
``store/staged.py``, or as the agent's JSON frame by earlier versions; minutes
as rows; both written at once so an agent is acknowledged as soon as its batch
is durable); the compaction pass (``store/chunks.py``) turns
closed windows of them into chunks (``store/tsz.py``). This module turns both
forms into the same series, so a query sees one series whatever is compacted.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from functools import lru_cache
from operator import itemgetter
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import msgspec
import numpy as np

from centrality_core import protocol as p
from centrality_core.documents import MetricColumns
from centrality_core.precision import digits as key_digits
from centrality_core.summary import select

from .store import staged, tsz
from .store.staged import merge_stats, minute_stats

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
    """A batch stored as the agent's JSON frame (before the staged form)."""
    return _stored_batch.decode(payload)


def batch_arrays(payload: bytes) -> staged.Staged:
    """A stored raw batch, staged (``store/staged.py``) or as a JSON frame of
    earlier versions, as ``(ts, keys, values[key, sample], text)``."""
    if staged.is_staged(payload):
        return staged.decode(payload)
    b = decode_batch(payload)
    return staged.Staged(np.asarray(b.ts, np.float64), b.keys, b.matrix(), b.text)


def batches_chunk(payloads: Iterable[bytes], **encode_args) -> tuple[bytes, float, float, int]:
    """Raw batch payloads as one tier-0 chunk: ``(chunk, ts_first, ts_last, values held)``."""
    payloads = list(payloads)
    window = staged.decode_window(payloads)
    if window is not None:
        ts, values = tsz.in_time_order(window.ts, window.values)
        keys, text = window.keys, window.text
    else:
        parts, text = [], []
        for payload in payloads:
            b = batch_arrays(payload)
            if not len(b.ts):
                continue
            parts.append((b.ts, b.keys, b.values))
            if b.text:
                newest = float(b.ts.max())
                text.extend((newest, k, v) for k, v in b.text.items())
        ts, keys, values = tsz.merge(parts)
    blob = tsz.encode(ts, keys, values, text, **encode_args)
    return blob, float(ts.min()), float(ts.max()), int((~np.isnan(values)).sum())


# ------------------------------------------------------------------ rollup chunks

def _stat_digits(row: str) -> int | None:
    key, _, stat = row.rpartition(_SEP)
    return 0 if stat == "n" else key_digits(key)


def stats_chunk(points: Sequence[tuple[float, Stats | staged.KeyStats]], **encode_args) -> tuple[bytes, int]:
    """Rollup points ``[(start, stats)]`` (``KeyStats``, or ``{key: [min, max, sum,
    count]}``) as one chunk (four rows per key); returns it and the number of key-points
    it holds."""
    points = [(t, staged.KeyStats.of(s)) for t, s in points]
    index: dict[str, int] = {}
    # Row numbers by key list: a machine's minutes share one list object (``points``
    # holds every list, so their ids stay unique here).
    rows_of: dict[int, np.ndarray] = {}
    for _, stats in points:
        if id(stats.keys) not in rows_of:
            rows_of[id(stats.keys)] = np.fromiter(
                (index.setdefault(k, len(index)) for k in stats.keys), np.intp, len(stats.keys))
    keys = list(index)
    values = np.full((len(keys), 4, len(points)), np.nan)
    held = 0
    for i, (_, stats) in enumerate(points):
        if stats.keys:
            held += len(stats.keys)
            values[rows_of[id(stats.keys)], :, i] = stats.values
    values = values.reshape(4 * len(keys), len(points))
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
    optional number per key, encoded under the key's name, left out when None).

    A window of a GPU node is ~1 million values; as Structs its rows are built
    and encoded in C, where a dict per row costs ~150 ns per value in Python.
    Rows hold only strings and numbers, so the garbage collector need not track
    them (``gc=False``). ``msgspec.to_builtins`` turns rows into the usual dicts."""
    fields = [("ts", str), *((f"v{i}", Optional[float], None) for i in range(len(names)))]
    return msgspec.defstruct("Row", fields, rename={f"v{i}": n for i, n in enumerate(names)},
                             omit_defaults=True, gc=False, module=__name__)


def iso_ms(t: np.ndarray) -> list[str]:
    """Times (s) as ISO 8601 UTC strings to the millisecond, like ``timefmt.iso``, in one go."""
    ms = np.round(np.asarray(t, np.float64) * 1000.0).astype(np.int64).astype("datetime64[ms]")
    return np.datetime_as_string(ms, unit="ms", timezone="UTC").tolist()


#: Below this a float64 holds every integer exactly.
_EXACT = float(2 ** 53)


def _whole_rows(keys: Sequence[str], rollup: bool = False) -> np.ndarray:
    """Which rows hold whole numbers: those of keys that keep no decimal digit. For a
    rollup's rows (``key``, ``key:min``, ``key:max`` per key) the minimum and maximum
    are whole, the average is not."""
    whole = np.array([key_digits(k) == 0 for k in keys], bool)
    if not rollup:
        return whole
    return np.stack([np.zeros_like(whole), whole, whole], axis=1).reshape(-1)


def _rows(out: list, t: np.ndarray, names: list[str], v: np.ndarray, whole: np.ndarray | None = None) -> None:
    """Append ``(time, row)`` per column of ``v`` (names x times), gaps left out.

    Values of keys kept as whole numbers (bytes, whole percents, degrees: see
    ``centrality_core.precision``) are answered as integers (``41``, not
    ``41.0``: the same JSON number, and printed ~6 times faster)."""
    if not v.shape[1]:
        return
    row = row_type(tuple(names))
    gaps = np.isnan(v)
    if whole is None:
        whole = _whole_rows(names)
    whole = whole & (np.abs(np.where(gaps, 0.0, v)).max(axis=1, initial=0.0) < _EXACT)
    with paused_gc():
        if whole.any() and not whole.all() and not gaps.any():
            # Whole and fractional rows, no gaps (a steady machine's window): each kind made
            # into Python numbers in one go, then put back in the names' order row by row
            # (``itemgetter`` in C), ~2 times cheaper than through an object array.
            iw, fw = np.flatnonzero(whole), np.flatnonzero(~whole)
            ints = np.ascontiguousarray(v[iw].T).astype(np.int64).tolist()
            fracs = np.ascontiguousarray(v[fw].T).tolist()
            at = np.empty(len(names), np.intp)
            at[iw], at[fw] = np.arange(len(iw)), len(iw) + np.arange(len(fw))
            pick = itemgetter(*at.tolist()) if len(names) > 1 else (lambda cells: (cells[0],))
            out.extend(zip(t.tolist(), [row(stamp, *pick(a + b)) for stamp, a, b in zip(iso_ms(t), ints, fracs)]))
            return
        if whole.any():
            cells = np.empty((v.shape[1], v.shape[0]), object)
            cells[:, whole] = np.where(gaps[whole], 0.0, v[whole]).T.astype(np.int64)
            if not whole.all():
                cells[:, ~whole] = v[~whole].T
            if gaps.any():
                cells[gaps.T] = None
            columns = cells.tolist()
        else:
            columns = np.ascontiguousarray(v.T).tolist()
            if gaps.any():
                for i in np.flatnonzero(gaps.any(axis=0)).tolist():
                    columns[i] = [None if x != x else x for x in columns[i]]
        out.extend(zip(t.tolist(), [row(stamp, *col) for stamp, col in zip(iso_ms(t), columns)]))


@contextmanager
def paused_gc():
    """The cyclic garbage collector paused while rows are built: a window makes
    thousands of lists of hundreds of numbers (no cycles among them), and a full
    collection triggered by them walks every object of the process (~20 ms)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _joined(segments: list[tuple[np.ndarray, list[str], np.ndarray]]) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
    """Consecutive segments ``(times, names, values[..., time])`` with the same names as one
    (a window of chunks of one agent is one matrix: its rows are built in one go)."""
    out: list[tuple[np.ndarray, list[str], np.ndarray]] = []
    run: list = []
    for seg in segments + [None]:  # type: ignore[list-item]
        if run and (seg is None or seg[1] != run[0][1]):
            if len(run) == 1:
                out.append(run[0])
            else:
                out.append((np.concatenate([s[0] for s in run]), run[0][1],
                            np.concatenate([s[2] for s in run], axis=-1)))
            run = []
        if seg is not None:
            run.append(seg)
    return out


def as_dicts(rows: list) -> list[dict]:
    """Rows of ``query`` as ``[{"ts": ISO, key: value}]``."""
    return msgspec.to_builtins(rows)


class Window(NamedTuple):
    """A window's answer before it is rows or columns: times in order, names (keys, or
    ``key``/``key:min``/``key:max`` of rollups), ``values[name, time]`` (NaN: no value)
    and which names are answered as whole numbers (``_rows``)."""

    t: np.ndarray
    names: list[str]
    values: np.ndarray
    whole: np.ndarray


def _window(segments: list[tuple[np.ndarray, list[str], np.ndarray, np.ndarray]]) -> Window:
    """Segments ``(times, names, values, whole)`` (after ``_joined``) as one window: the
    union of their names in order of first appearance, NaN where a segment had no such
    name, times in order (stable: equal times keep their segments' order)."""
    if not segments:
        return Window(np.zeros(0), [], np.zeros((0, 0)), np.zeros(0, bool))
    if len(segments) == 1:
        t, names, v, whole = segments[0]
    else:
        index: dict[str, int] = {}
        flags: list[bool] = []
        for _, names, _, whole in segments:
            for name, w in zip(names, whole.tolist()):
                if name not in index:
                    index[name] = len(index)
                    flags.append(w)
        names = list(index)
        t = np.concatenate([s[0] for s in segments])
        v = np.full((len(names), len(t)), np.nan)
        at = 0
        for ts, seg_names, sv, _ in segments:
            v[[index[n] for n in seg_names], at:at + len(ts)] = sv
            at += len(ts)
        whole = np.array(flags, bool)
    if len(t) > 1 and (np.diff(t) < 0).any():
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[:, order]
    return Window(t, list(names), v, whole)


def window_rows(w: Window) -> list:
    """A window as rows (``row_type``: ``{"ts": ISO, key: value}`` once encoded, gaps left out)."""
    out: list = []
    _rows(out, w.t, w.names, w.values, w.whole)
    return [row for _, row in out]


def window_columns(w: Window) -> MetricColumns:
    """A window as the columns ``metrics --columns`` answers (``documents.MetricColumns``):
    whole-number names without a gap as packed integers, the others as packed float64
    (NaN: no value). The client makes them into the same rows (``documents.metric_rows``)."""
    v = w.values
    n = len(w.t)
    gaps = np.isnan(v)
    has_gap = gaps.any(axis=1)
    whole = w.whole & (np.abs(np.where(gaps, 0.0, v)).max(axis=1, initial=0.0) < _EXACT)
    ints = whole & ~has_gap
    iw, fw = np.flatnonzero(ints), np.flatnonzero(~ints)
    return MetricColumns(
        ts=iso_ms(w.t), keys=w.names, ints=iw.tolist(), whole=np.flatnonzero(whole & has_gap).tolist(),
        gaps=np.flatnonzero(gaps.any(axis=0)).tolist() if n else [],
        int_values=v[iw].astype("<i8").tobytes(), float_values=np.ascontiguousarray(v[fw], "<f8").tobytes())


def raw_rows(series: Iterable[tuple[np.ndarray, list[str], np.ndarray, bool]], since: float, until: float,
             patterns: list[str] | None) -> list:
    """Samples of chunks and batches ``(ts, keys, values, at_precision)`` as rows
    (``row_type``: ``{"ts": ISO, key: value}`` once encoded) in time order, each value
    at its stored precision (batches not compacted yet are rounded here, as
    compaction will)."""
    return window_rows(raw_window(series, since, until, patterns))


def raw_window(series: Iterable[tuple[np.ndarray, list[str], np.ndarray, bool]], since: float, until: float,
               patterns: list[str] | None) -> Window:
    """``raw_rows`` before it is rows."""
    segments = []
    for ts, keys, values, at_precision in series:
        t = np.asarray(ts, np.float64)
        inside = (t >= since) & (t <= until)
        if not inside.any():
            continue
        if patterns:
            chosen = set(select(keys, patterns))
            wanted = [i for i, k in enumerate(keys) if k in chosen]
            if not wanted:
                continue
            names = [keys[i] for i in wanted]
            v = values[wanted] if len(wanted) < len(keys) else values
        else:
            names, v = list(keys), values
        v = v[:, inside] if not inside.all() else v
        if at_precision:
            segments.append((t[inside], names, v))
        else:  # not compacted yet: as compaction will keep it (times to the ms, values rounded)
            segments.append((tsz.quantize_ts(t[inside]), names, tsz.quantize(names, v)))
    return _window([(t, names, v, _whole_rows(names)) for t, names, v in _joined(segments)])


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
                       patterns: list[str] | None) -> list:
    """``rollup_rows`` of ``stats_arrays`` series, without a dict per point and key
    (a day of a GPU node's minutes is 1,440 x 214 keys)."""
    return window_rows(rollup_window(series, since, until, patterns))


def rollup_window(series: list[tuple[np.ndarray, list[str], np.ndarray]], since: float, until: float,
                  patterns: list[str] | None) -> Window:
    """``rollup_matrix_rows`` before it is rows."""
    stamps = np.concatenate([t for t, _, _ in series]) if series else np.zeros(0)
    if len(np.unique(stamps)) != len(stamps):  # a minute in two chunks (late samples): merge them
        points = [(t, {k: [mn, mx, sm, int(n)] for k, (mn, mx, sm, n) in zip(keys, col) if n == n and n > 0})
                  for ts, keys, st in series for t, col in zip(ts.tolist(), st.transpose(2, 1, 0).tolist())]
        return points_window(points, since, until, patterns)
    segments = []
    for ts, keys, st in series:
        inside = (ts >= since) & (ts <= until)
        if not inside.any():
            continue
        if patterns:
            chosen = set(select(keys, patterns))
            wanted = [i for i, k in enumerate(keys) if k in chosen]
            if not wanted:
                continue
            st = st[:, wanted]
            keys = [keys[i] for i in wanted]
        segments.append((ts, keys, st) if inside.all() else (ts[inside], keys, st[:, :, inside]))
    return _window([_stats_segment(t, keys, st) for t, keys, st in _joined(segments)])


def _stats_segment(t: np.ndarray, keys: list[str], st: np.ndarray):
    """``[min, max, sum, count] x key x time`` as a segment of average, min, max per key."""
    mn, mx, sm, n = st
    v = np.empty((len(keys), 3, len(t)))  # per key: average, min, max
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(sm, n, out=v[:, 0])
    v[:, 1], v[:, 2] = mn, mx
    have = n > 0
    if not have.all():
        v.transpose(1, 0, 2)[:, ~have] = np.nan
    names = [name for k in keys for name in (k, f"{k}:min", f"{k}:max")]
    return t, names, v.reshape(-1, len(t)), _whole_rows(keys, rollup=True)


def rollup_rows(points: Iterable[tuple[float, Stats]], since: float, until: float,
                patterns: list[str] | None) -> list:
    """Rollup points (possibly two for one start: merged) as ``[{"ts", key: avg, key:min, key:max}]``."""
    return window_rows(points_window(points, since, until, patterns))


def points_window(points: Iterable[tuple[float, Stats]], since: float, until: float,
                  patterns: list[str] | None) -> Window:
    """``rollup_rows`` before it is rows."""
    merged: dict[float, Stats] = {}
    for t, stats in points:
        if since <= t <= until:
            merged[t] = merge_stats(merged[t], stats) if t in merged else stats
    starts = sorted(merged)
    index: dict[str, int] = {}
    for t in starts:
        for key in select(merged[t], patterns):
            index.setdefault(key, len(index))
    keys = list(index)
    st = np.full((4, len(keys), len(starts)), np.nan)
    for i, t in enumerate(starts):
        stats = merged[t]
        chosen = [k for k in stats if k in index]
        if chosen:
            st[:, [index[k] for k in chosen], i] = np.array([stats[k] for k in chosen], np.float64).T
    st[3] = np.nan_to_num(st[3], nan=0.0)
    return _window([_stats_segment(np.array(starts, np.float64), keys, st)] if starts else [])


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
          patterns: list[str] | None, resolution: str) -> list:
    """One machine's window at ``resolution`` (``raw``, ``1m``, ``1h``), from the
    chunks of its tier and what is not compacted yet, as one series of rows. Blocking:
    run it in a worker thread. The cyclic collector waits meanwhile (``paused_gc``):
    in a control plane holding thousands of machines a full collection walks
    millions of objects, which a window's allocations would trigger."""
    with paused_gc():
        return window_rows(_query(store, chunks, machine_id, since, until, patterns, resolution))


def query_columns(store: Any, chunks: Any, machine_id: str, since: float, until: float,
                  patterns: list[str] | None, resolution: str) -> MetricColumns:
    """``query`` as columns (``window_columns``): what ``metrics --columns`` answers,
    ~5 times cheaper to make and send than the rows of a GPU node's day."""
    with paused_gc():
        return window_columns(_query(store, chunks, machine_id, since, until, patterns, resolution))


def _query(store: Any, chunks: Any, machine_id: str, since: float, until: float,
           patterns: list[str] | None, resolution: str) -> Window:
    if resolution == "raw":
        series = []
        only = (lambda keys: select(keys, patterns)) if patterns else None
        for blob in chunks.read(machine_id, 0, since, until):
            c = tsz.decode(blob, only)
            series.append((c.ts, c.keys, c.values, True))
        for payload in store.metric_batches(machine_id, since, until):
            b = batch_arrays(payload)
            series.append((b.ts, b.keys, b.values, False))
        return raw_window(series, since, until, patterns)
    if resolution == "1m":
        series = [stats_arrays(blob, patterns) for blob in chunks.read(machine_id, 1, since, until)]
        recent = _recent_minutes(store, machine_id, since, until)
        if recent:
            series.append(stats_arrays(recent, patterns))
        return rollup_window(series, since, until, patterns)
    hours = [pt for blob in chunks.read(machine_id, 2, since, until) for pt in chunk_stats(blob)]
    covered = max((t for t, _ in hours), default=since - 3600.0) + 3600.0  # hours not yet in tier 2
    if covered <= until:
        hours += coarsen(_minutes(store, chunks, machine_id, covered, until), 3600.0)
    return points_window(hours, since - since % 3600.0, until, patterns)


def _recent_minutes(store: Any, machine_id: str, since: float, until: float) -> bytes | None:
    """The minutes not compacted yet (the last hour or so), through the chunk format
    so that they read at the stored precision, as they will once compacted."""
    recent = [(minute, minute_stats(payload)) for minute, payload in
              store.metric_rollups(machine_id, since, until)]
    return stats_chunk(recent, codec="none")[0] if recent else None


def _minutes(store: Any, chunks: Any, machine_id: str, since: float, until: float) -> list[tuple[float, Stats]]:
    points = [pt for blob in chunks.read(machine_id, 1, since, until) for pt in chunk_stats(blob)]
    recent = _recent_minutes(store, machine_id, since, until)
    return points + chunk_stats(recent) if recent else points
