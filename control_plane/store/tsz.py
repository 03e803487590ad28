"""A compressed, column-wise format for a chunk of one machine's samples.

Pure: bytes in, arrays out, no I/O. A chunk is ``n`` sample times, ``k`` keys
and a ``k x n`` float64 matrix with NaN where a key had no value (a key that
appears or vanishes mid-chunk is NaN before or after), plus the text streams
(``nvidia_smi``) as ``(ts, key, text)``.

Encoding, key after key (column-wise):

* **times** to the millisecond, as delta-of-delta integers (a steady 1 s
  cadence is all zeros but the jitter);
* **values** rounded to their key's precision (``centrality_core.precision``)
  become integers (``round(v * 10**digits)``) stored as delta or
  delta-of-delta, whichever is smaller for that key (counters, steady gauges);
  a key without a rule, or whose integers would not be exact in a float64, is
  stored as its float64 bits XORed with the previous value's (Gorilla's idea);
* **missing values**: a presence bitmap per key that has both values and gaps;
  a key with none or all is one state byte;
* every integer is zigzagged and the bytes of all of them are *byte-shuffled*
  (all first bytes, then all second bytes, ...), keeping only as many bytes
  as the largest needs: the high bytes of small deltas are long runs of zeros
  that the compressor removes;
* the whole is compressed once with **zstd** (``zstandard``), level 3 by
  default; ``lz4`` is accepted for measurements (bench/storage.py compares).

Decoding gives back the times to the millisecond and the values exactly as
rounded (``quantize``): ``decode(encode(c))`` equals ``quantize(c)`` bit for bit,
NaN where there was no value.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import msgspec
import numpy as np

from centrality_core.precision import digits as key_digits

MAGIC = b"TZ"
VERSION = 1
CODECS = {"none": 0, "zstd": 1, "lz4": 2}
_CODEC_NAMES = {v: k for k, v in CODECS.items()}
_EXACT = float(2 ** 52)  # integers below this survive the float64 round trip and the deltas
_FULL, _PARTIAL, _EMPTY = 0, 1, 2
_FLOAT = -1  # kind: lossless float64


class Chunk(NamedTuple):
    ts: np.ndarray             # (n,) float64, seconds
    keys: list[str]
    values: np.ndarray         # (k, n) float64, NaN = no value
    text: list[tuple[float, str, str]]


class _Header(msgspec.Struct, array_like=True):
    n: int
    t0: int                    # first time, ms
    keys: list[str]
    kinds: list[int]           # per key: 10 * order + digits (order 0, 1, 2: see _best_order); -1 float
    states: bytes              # per key: _FULL | _PARTIAL | _EMPTY
    text: list[tuple[float, str, str]] = []
    tw: int = 8                # bytes kept per time delta-of-delta
    iw: int = 8                # bytes kept per integer


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Header)


# ------------------------------------------------------------------ helpers

def _zigzag(x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Signed integers as unsigned, small magnitudes small (``inplace``: ``x`` is overwritten)."""
    x = x.astype(np.int64, copy=not inplace)
    sign = x >> 63
    x <<= 1
    x ^= sign
    return x.view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64, copy=False)
    out = (u >> np.uint64(1)).view(np.int64)
    sign = (u & np.uint64(1)).view(np.int64)
    np.negative(sign, out=sign)
    out ^= sign
    return out


def _width(u: np.ndarray) -> int:
    """Bytes needed for the largest of ``u`` (uint64), at least 1."""
    top = int(u.max()) if u.size else 0
    return max(1, (top.bit_length() + 7) // 8)


def _shuffle(u: np.ndarray, width: int = 8) -> bytes:
    """uint64 array -> its ``width`` low bytes, plane by plane (all byte 0s, then all
    byte 1s, ...): the planes of small numbers' high bytes are zeros, or not there."""
    return np.ascontiguousarray(u.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)[:, :width].T).tobytes()


def _unshuffle(b: bytes, count: int, width: int = 8) -> np.ndarray:
    planes = np.frombuffer(b, np.uint8, count * width).reshape(width, count)
    out = np.zeros((count, 8), np.uint8)
    out[:, :width] = planes.T
    return out.view("<u8").reshape(count)


def _compress(raw: bytes, codec: str, level: int) -> bytes:
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=level).compress(raw)
    if codec == "lz4":
        import lz4.frame
        return lz4.frame.compress(raw, compression_level=level)
    if codec == "none":
        return raw
    raise ValueError(f"unknown codec {codec!r}")


def _decompress(blob: bytes, codec: str) -> bytes:
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(blob)
    if codec == "lz4":
        import lz4.frame
        return lz4.frame.decompress(blob)
    return blob


def scales(keys: Sequence[str], digits: Callable[[str], int | None] = key_digits) -> list[int | None]:
    return [digits(k) for k in keys]


def quantize(keys: Sequence[str], values: np.ndarray,
             digits: Callable[[str], int | None] = key_digits) -> np.ndarray:
    """``values`` as the store keeps them: each key's row rounded to its digits
    (rows without a rule, or too large to be exact, unchanged)."""
    out = np.array(values, np.float64, copy=True)
    if out.ndim != 2:
        out = out.reshape(len(keys), out.size // len(keys) if keys else 0)
    for j, d in enumerate(scales(keys, digits)):
        if d is None:
            continue
        with np.errstate(over="ignore"):
            q = np.round(out[j] * 10.0 ** d)
        if np.nanmax(np.abs(q), initial=0.0) < _EXACT:
            out[j] = q / 10.0 ** d
    return out


def quantize_ts(ts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(ts, np.float64) * 1000.0) / 1000.0


def _bits(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """About how many bits the integers ``x`` take once zigzagged (per row)."""
    return np.frexp(np.abs(x).astype(np.float64) * 2.0 + 1.0)[1].sum(axis=axis)


#: Samples looked at to choose a key's transform (the start of the chunk).
_PROBE = 128


def _transform(q: np.ndarray, order: int) -> np.ndarray:
    if order == 0:
        out = q.copy()
        out[:, 1:] -= q[:, :1]
        return out
    for _ in range(order):
        q = np.diff(q, axis=1, prepend=0)
    return q


def _orders(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the integers ``q`` (keys x samples), whichever transform is smallest
    on the first samples: offsets from the first value (order 0: noise around a
    level), deltas (1: a wandering gauge) or delta-of-deltas (2: counters, steady
    ramps). The first value is kept as is. Returns the orders and the rows."""
    probe = q[:, :_PROBE + 2]
    d1 = np.diff(probe, axis=1)
    costs = np.stack([_bits(probe[:, 2:] - probe[:, :1]), _bits(d1[:, 1:]), _bits(np.diff(d1, axis=1))])
    order = costs.argmin(axis=0)
    out = np.empty_like(q)
    for o in (0, 1, 2):
        rows = order == o
        if rows.any():
            out[rows] = _transform(q[rows], o)
    return order, out


def _as_ints(rows: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows * 10**d`` rounded, and which rows are exact as integers."""
    with np.errstate(over="ignore", invalid="ignore"):
        q = rows * (10.0 ** d)[:, None]
        np.round(q, out=q)
        ok = np.maximum(q.max(axis=1, initial=0.0), -q.min(axis=1, initial=0.0)) < _EXACT
    return q, ok


# ------------------------------------------------------------------ encode / decode

def encode(ts: Sequence[float] | np.ndarray, keys: Sequence[str], values: np.ndarray,
           text: Sequence[tuple[float, str, str]] = (), *, codec: str = "zstd", level: int = 3,
           digits: Callable[[str], int | None] = key_digits) -> bytes:
    """One chunk as bytes. ``values``: ``len(keys) x len(ts)``, NaN for no value;
    infinities are refused (the control plane refuses them before)."""
    t = np.asarray(ts, np.float64)
    n, k = len(t), len(keys)
    v = np.asarray(values, np.float64).reshape(k, n)
    if not np.isfinite(t).all():
        raise ValueError("sample times must be finite")
    if np.isinf(v).any():
        raise ValueError("values must be finite (NaN for no value)")
    tq = np.round(t * 1000.0).astype(np.int64)
    t0 = int(tq[0]) if n else 0
    tdod = np.diff(np.diff(tq - t0, prepend=0), prepend=0) if n else tq

    present = ~np.isnan(v)
    counts = present.sum(axis=1)
    states = np.where(counts == n, _FULL, np.where(counts == 0, _EMPTY, _PARTIAL)).astype(np.uint8)
    if n == 0:
        states[:] = _EMPTY
    dig = scales(keys, digits)
    # The usual case, in one go: keys with a value in every sample and a precision rule.
    whole = [j for j in range(k) if states[j] == _FULL and dig[j] is not None]
    fast: dict[int, tuple[int, np.ndarray]] = {}
    every = None  # the fast path's integers when it holds every key, in order
    if whole:
        q, ok = _as_ints(v[whole] if len(whole) < k else v, np.array([dig[j] for j in whole], np.float64))
        rows = [j for j, good in zip(whole, ok.tolist()) if good]
        if rows:
            orders, best = _orders((q if len(rows) == len(whole) else q[ok]).astype(np.int64))
            fast = {j: (o, best[i]) for i, (j, o) in enumerate(zip(rows, orders.tolist()))}
            if len(rows) == k:
                every = best
    kinds: list[int] = []
    ints: list[np.ndarray] = []
    floats: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for j in range(k):
        if j in fast:
            order, row = fast[j]
            ints.append(row)
            kinds.append(10 * order + dig[j])
            continue
        state, d = states[j], dig[j]
        if state == _EMPTY:
            kinds.append(_FLOAT)
            continue
        row = v[j]
        if state == _PARTIAL:
            masks.append(np.packbits(present[j]))
            row = row[present[j]]
        if d is not None:
            q, ok = _as_ints(row[None, :], np.array([d], np.float64))
            if ok[0]:
                orders, best = _orders(q.astype(np.int64))
                ints.append(best[0])
                kinds.append(10 * int(orders[0]) + d)
                continue
        bits = row.view(np.uint64)
        floats.append(bits ^ np.concatenate(([np.uint64(0)], bits[:-1])))
        kinds.append(_FLOAT)
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    tz = _zigzag(tdod)
    iz = _zigzag(every.reshape(-1) if every is not None else cat(ints, np.int64), inplace=True)
    tw, iw = _width(tz), _width(iz)
    header = _enc.encode(_Header(n=n, t0=t0, keys=list(keys), kinds=kinds, states=states.tobytes(),
                                 text=[(float(a), str(b), str(c)) for a, b, c in text], tw=tw, iw=iw))
    body = b"".join((
        len(header).to_bytes(4, "little"), header,
        _shuffle(tz, tw),
        cat(masks, np.uint8).tobytes(),
        _shuffle(iz, iw),
        _shuffle(cat(floats, np.uint64)),
    ))
    return MAGIC + bytes((VERSION, CODECS[codec])) + _compress(body, codec, level)


def _undo(rows: np.ndarray, order: int) -> np.ndarray:
    """``_orders`` undone, row-wise (rows: integers, one row per key)."""
    if order == 0:
        out = rows.copy()
        out[:, 1:] += rows[:, :1]
        return out
    for _ in range(order):
        rows = np.cumsum(rows, axis=1)
    return rows


def decode(blob: bytes, only: Callable[[list[str]], Sequence[str]] | None = None) -> Chunk:
    """A chunk back. ``only(keys)``: the keys wanted (e.g. ``summary.select``); the
    others are not decoded and not returned."""
    if blob[:2] != MAGIC or blob[2] != VERSION or blob[3] not in _CODEC_NAMES:
        raise ValueError("not a metric chunk (or a version this control plane does not read)")
    body = memoryview(_decompress(bytes(blob[4:]), _CODEC_NAMES[blob[3]]))
    hlen = int.from_bytes(body[:4], "little")
    h = _dec.decode(body[4:4 + hlen])
    n, k = h.n, len(h.keys)
    pos = 4 + hlen
    tq = np.cumsum(np.cumsum(_unzigzag(_unshuffle(body[pos:pos + h.tw * n], n, h.tw)))) + h.t0
    pos += h.tw * n
    ts = tq / 1000.0
    states = np.frombuffer(h.states, np.uint8)
    kinds = np.asarray(h.kinds, np.int64)
    mask_len = (n + 7) // 8
    sizes = np.where(states == _EMPTY, 0, n)
    masks: dict[int, np.ndarray] = {}
    for j in np.flatnonzero(states == _PARTIAL).tolist():
        masks[j] = m = np.unpackbits(np.frombuffer(body[pos:pos + mask_len], np.uint8), count=n).astype(bool)
        sizes[j] = int(m.sum())
        pos += mask_len
    is_float = kinds == _FLOAT
    int_sizes = np.where(is_float, 0, sizes)
    float_sizes = np.where(is_float, sizes, 0)
    n_int, n_float = int(int_sizes.sum()), int(float_sizes.sum())
    ints = _unzigzag(_unshuffle(body[pos:pos + h.iw * n_int], n_int, h.iw))
    pos += h.iw * n_int
    floats = _unshuffle(body[pos:pos + 8 * n_float], n_float)
    int_at = np.cumsum(int_sizes) - int_sizes      # where each key's integers start
    float_at = np.cumsum(float_sizes) - float_sizes
    keys = list(h.keys)
    if only is None:
        picked = np.arange(len(keys))
    else:
        wanted = set(only(keys))
        picked = np.array([j for j, key in enumerate(keys) if key in wanted], np.int64)
    values = np.full((len(picked), n), np.nan)
    order, d = kinds // 10, kinds % 10
    whole = ~is_float[picked] & (states[picked] == _FULL)
    span = np.arange(n)
    for o in (0, 1, 2):  # whole rows of integers, each order in one go
        rows = np.flatnonzero(whole & (order[picked] == o))
        if rows.size:
            js = picked[rows]
            block = _undo(ints[int_at[js][:, None] + span], o)
            values[rows] = block / (10.0 ** d[js].astype(np.float64))[:, None]
    for r in np.flatnonzero(~whole).tolist():  # floats and rows with gaps, one by one
        j = int(picked[r])
        size = int(sizes[j])
        if not size:
            continue
        if is_float[j]:
            row = np.bitwise_xor.accumulate(floats[float_at[j]:float_at[j] + size]).view(np.float64)
        else:
            row = _undo(ints[int_at[j]:int_at[j] + size][None, :], int(order[j]))[0] / 10.0 ** int(d[j])
        if j in masks:
            values[r, masks[j]] = row
        else:
            values[r] = row
    return Chunk(ts, [keys[j] for j in picked.tolist()], values, [tuple(x) for x in h.text])


def merge(parts: Sequence[tuple[Sequence[float], Sequence[str], np.ndarray]]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Batches ``(ts, keys, values)`` as one ``(ts, keys, values)``: times in order
    (stable: equal times keep their batch order), the union of keys in order of
    first appearance, NaN where a batch did not have a key."""
    if not parts:
        return np.zeros(0), [], np.zeros((0, 0))
    first = list(parts[0][1])
    ts = np.concatenate([np.asarray(t, np.float64) for t, _, _ in parts])
    if all(keys == first for _, keys, _ in parts):  # the usual case: one agent, same keys all along
        out = np.concatenate([np.asarray(v, np.float64).reshape(len(first), len(t)) for t, _, v in parts], axis=1)
        keys = first
    else:
        index: dict[str, int] = {}
        rows_of: dict[tuple, list[int]] = {}
        for _, ks, _ in parts:
            shape = tuple(ks)
            if shape not in rows_of:
                rows_of[shape] = [index.setdefault(k, len(index)) for k in shape]
        out = np.full((len(index), len(ts)), np.nan)
        col = 0
        for t, ks, v in parts:
            m = len(t)
            out[rows_of[tuple(ks)], col:col + m] = np.asarray(v, np.float64).reshape(len(ks), m)
            col += m
        keys = list(index)
    ts, out = in_time_order(ts, out)
    return ts, keys, out


def in_time_order(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ts`` sorted and ``values``' columns with them (stable: equal times keep their order)."""
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[:, order]
    return ts, values
