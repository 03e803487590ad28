"""The staged form of a raw batch: what is stored when a batch arrives, until compaction.

Pure: bytes in, arrays out, no I/O. A batch waits in ``metric_batches`` for up to
a chunk's length (30 minutes) before compaction turns it into a chunk; it is
written once and read once (plus by queries of the last half hour), so the form
is made to be cheap both ways rather than small:

    b"\\x00STG" version:u8  n:u32 k:u32 keys_len:u32 text_len:u32
    ts: n float64   values: k x n float64 (NaN: no value)   keys   text

all little-endian. ``values`` are the agent's packed floats as received (the
rounding to each key's precision happens at compaction, as before). ``keys`` is
the batch's key list joined by ``\\x1f`` and compressed (zstd): a GPU node sends
~200 keys, ~4 KB, the same in every batch, so the compressed list (~0.6 KB) is
made once per distinct list and kept (``_KEYS``), and read back as the same list
object for every batch that carries it (merging a window's batches then compares
lists by identity). ``text`` is the batch's text streams as JSON (empty: none).

A stored payload that does not start with ``MAGIC`` is an agent frame as stored
by earlier versions (JSON, ``history.StoredBatch``): ``history.decode_batch``
reads both, so rows staged before an upgrade are compacted and read as before.

A minute waiting for its hour's chunk (``metric_rollups``) is staged the same way:

    b"\x00STM" version:u8  k:u32 keys_len:u32   stats: k x 4 float64   keys

``stats`` holds each key's min, max, sum and count (keys without values are left
out); ``keys`` is the compressed key list, shared with the batches. Earlier
versions stored a minute as JSON ``{key: [min, max, sum, count]}``:
``minute_stats`` reads both.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import NamedTuple, Sequence

import msgspec
import numpy as np

MAGIC = b"\x00STG"  # a JSON frame starts with "{": the two cannot be confused
MINUTE_MAGIC = b"\x00STM"
VERSION = 1
_HEAD = struct.Struct("<4sBIIII")
_MINUTE_HEAD = struct.Struct("<4sBII")
_SEP = "\x1f"  # unit separator: never in a key (keys with control characters are refused)
#: Key lists kept, both ways (a control plane sees a few shapes per machine model).
MAX_KEY_LISTS = 4096

_KEYS: dict[tuple[str, ...], bytes] = {}
_LISTS: dict[bytes, list[str]] = {}


class Staged(NamedTuple):
    ts: np.ndarray        # (n,) float64
    keys: list[str]
    values: np.ndarray    # (k, n) float64, read-only
    text: dict[str, str]


class KeyStats(NamedTuple):
    """A minute's rollup: ``values[i]`` is ``[min, max, sum, count]`` of ``keys[i]``."""

    keys: list[str]
    values: np.ndarray    # (k, 4) float64

    @classmethod
    def of(cls, stats: KeyStats | dict[str, list]) -> KeyStats:
        """From ``{key: [min, max, sum, count]}`` (a ``KeyStats`` is returned as it is)."""
        if isinstance(stats, KeyStats):
            return stats
        return cls(list(stats), np.array(list(stats.values()), np.float64).reshape(len(stats), 4))

    def as_dict(self) -> dict[str, list]:
        """As ``{key: [min, max, sum, count]}`` (count an int)."""
        return {k: [mn, mx, total, int(n)] for k, (mn, mx, total, n) in zip(self.keys, self.values.tolist())}

    def merge(self, other: KeyStats) -> KeyStats:
        """Both minutes' samples as one (a late batch into its stored minute)."""
        if self.keys is other.keys or self.keys == other.keys:
            a, b = self.values, other.values
            return KeyStats(self.keys, np.column_stack((np.fmin(a[:, 0], b[:, 0]), np.fmax(a[:, 1], b[:, 1]),
                                                        a[:, 2] + b[:, 2], a[:, 3] + b[:, 3])))
        return KeyStats.of(merge_stats(self.as_dict(), other.as_dict()))


def merge_stats(a: dict[str, list], b: dict[str, list]) -> dict[str, list]:
    """Combine two ``{key: [min, max, sum, count]}`` maps."""
    out = dict(a)
    for key, (mn, mx, total, n) in b.items():
        s = out.get(key)
        out[key] = [mn, mx, total, n] if s is None else [min(s[0], mn), max(s[1], mx), s[2] + total, s[3] + n]
    return out


def _keys_blob(keys: Sequence[str]) -> bytes:
    shape = tuple(keys)
    blob = _KEYS.get(shape)
    if blob is None:
        import zstandard
        blob = zstandard.ZstdCompressor(level=3).compress(_SEP.join(shape).encode())
        if len(_KEYS) >= MAX_KEY_LISTS:
            _KEYS.clear()
        _KEYS[shape] = blob
    return blob


def _key_list(blob: bytes) -> list[str]:
    keys = _LISTS.get(blob)
    if keys is None:
        import zstandard
        joined = zstandard.ZstdDecompressor().decompress(blob).decode()
        keys = joined.split(_SEP) if joined else []
        if len(_LISTS) >= MAX_KEY_LISTS:
            _LISTS.clear()
        _LISTS[blob] = keys
    return keys


def encode(ts: Sequence[float], keys: Sequence[str], values: np.ndarray | bytes,
           text: dict[str, str] | None = None) -> bytes:
    """A batch in its staged form. ``values``: ``len(keys) x len(ts)`` float64 (NaN for
    no value), or those already packed little-endian (the agent's ``values``)."""
    n, k = len(ts), len(keys)
    if isinstance(values, np.ndarray):
        values = np.ascontiguousarray(values, "<f8").tobytes()
    if len(values) != 8 * n * k:
        raise ValueError(f"{len(values)} bytes of values for {k} keys x {n} samples")
    keys_blob = _keys_blob(keys)
    text_blob = msgspec.json.encode(text) if text else b""
    return b"".join((_HEAD.pack(MAGIC, VERSION, n, k, len(keys_blob), len(text_blob)),
                     _f8(ts), values, keys_blob, text_blob))


def _f8(ts: Sequence[float]) -> bytes:
    if isinstance(ts, np.ndarray):
        return np.ascontiguousarray(ts, "<f8").tobytes()
    packed = array("d", ts)
    if sys.byteorder == "big":  # pragma: no cover - stored little-endian
        packed.byteswap()
    return packed.tobytes()


def is_staged(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def decode(payload: bytes) -> Staged:
    """``encode`` undone (arrays are views of ``payload``: read-only)."""
    magic, version, n, k, klen, tlen = _HEAD.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a staged metric batch (or a version this control plane does not read)")
    pos = _HEAD.size
    ts = np.frombuffer(payload, "<f8", n, pos)
    pos += 8 * n
    values = np.frombuffer(payload, "<f8", n * k, pos).reshape(k, n)
    pos += 8 * n * k
    keys = _key_list(bytes(payload[pos:pos + klen]))
    if len(keys) != k:
        raise ValueError(f"staged batch: {len(keys)} keys, {k} expected")
    pos += klen
    text = msgspec.json.decode(payload[pos:pos + tlen]) if tlen else {}
    return Staged(ts, keys, values, text)


class Window(NamedTuple):
    """A window's staged batches as one: ``text`` is ``(newest ts of its batch, stream, value)``."""

    ts: np.ndarray        # (n,) float64, the batches' times end to end
    keys: list[str]
    values: np.ndarray    # (k, n) float64
    text: list[tuple[float, str, str]]


def decode_window(payloads: Sequence[bytes]) -> Window | None:
    """Staged batches of one key list and one length (one agent's window: the usual
    case) decoded at once, or None when they are not all alike (``decode`` each).

    The times and values are copied from the payloads into one buffer each instead
    of an array per batch merged afterwards: per stored batch, compaction's share
    is then the unpacking of a header.
    """
    if not payloads:
        return None
    head = _HEAD.unpack_from(payloads[0])
    magic, version, n, k, klen, _ = head
    if magic != MAGIC or version != VERSION or not n:
        return None
    at = _HEAD.size + 8 * n
    end = at + 8 * n * k
    keys_blob = payloads[0][end:end + klen]
    times, values, text = [], [], []
    for p in payloads:
        h = _HEAD.unpack_from(p)
        if h[:5] != head[:5] or p[end:end + klen] != keys_blob:
            return None
        view = memoryview(p)
        times.append(view[_HEAD.size:at])
        values.append(view[at:end])
        if h[5]:
            newest = float(np.frombuffer(p, "<f8", n, _HEAD.size).max())
            text.extend((newest, s, v) for s, v in msgspec.json.decode(view[end + klen:end + klen + h[5]]).items())
    ts = np.frombuffer(b"".join(times), "<f8")
    b = len(payloads)
    vals = np.frombuffer(b"".join(values), "<f8").reshape(b, k, n).transpose(1, 0, 2).reshape(k, b * n)
    keys = _key_list(bytes(keys_blob))
    if len(keys) != k:
        raise ValueError(f"staged batch: {len(keys)} keys, {k} expected")
    return Window(ts, keys, vals, text)


def is_staged_minute(payload: bytes) -> bool:
    return payload[:4] == MINUTE_MAGIC


def encode_minute(stats: KeyStats) -> bytes:
    """A minute's rollup in its staged form."""
    k = len(stats.keys)
    values = np.ascontiguousarray(stats.values, "<f8")
    if values.shape != (k, 4):
        raise ValueError(f"stats of shape {values.shape} for {k} keys")
    keys_blob = _keys_blob(stats.keys)
    return b"".join((_MINUTE_HEAD.pack(MINUTE_MAGIC, VERSION, k, len(keys_blob)), values.tobytes(), keys_blob))


def decode_minute(payload: bytes) -> KeyStats:
    """``encode_minute`` undone (the array is a read-only view of ``payload``)."""
    magic, version, k, klen = _MINUTE_HEAD.unpack_from(payload)
    if magic != MINUTE_MAGIC or version != VERSION:
        raise ValueError("not a staged minute (or a version this control plane does not read)")
    pos = _MINUTE_HEAD.size
    values = np.frombuffer(payload, "<f8", 4 * k, pos).reshape(k, 4)
    keys = _key_list(bytes(payload[pos + 32 * k:pos + 32 * k + klen]))
    if len(keys) != k:
        raise ValueError(f"staged minute: {len(keys)} keys, {k} expected")
    return KeyStats(keys, values)


def minute_stats(payload: bytes) -> KeyStats:
    """A stored minute row: staged (``encode_minute``), or the JSON ``{key: [min, max,
    sum, count]}`` of earlier versions."""
    if is_staged_minute(payload):
        return decode_minute(payload)
    return KeyStats.of(msgspec.json.decode(payload))
