"""Framing of the agent protocol, and the packed form of metric values.

One message is one JSON object on one ``\\n``-terminated line of at most
``MAX_FRAME_BYTES``; ``FrameBuffer`` splits a byte stream into such frames
without ever buffering more than that. ``pack_values`` / ``unpack_values`` are
the float64 form of a metric batch's values (protocol 1.1). ``protocol.py``
re-exports all of it.
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from itertools import chain
from typing import Any

from .errors import FrameTooLarge

#: Largest frame either side accepts, newline included.
MAX_FRAME_BYTES = 1024 * 1024

_NAN = float("nan")


def pack_values(columns: list[list[float | None]]) -> bytes:
    """Columns as float64 little-endian, column after column; None becomes NaN."""
    flat = chain.from_iterable(columns)
    try:
        packed = array("d", flat)
    except TypeError:  # a None: the slow path
        packed = array("d", (_NAN if v is None else v for v in chain.from_iterable(columns)))
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        packed.byteswap()
    return packed.tobytes()


def pack_rows(flat: array, width: int) -> bytes:
    """Rows of ``width`` float64 (``flat``: row after row, NaN for none) as ``pack_values``
    packs the same values in columns: the agent keeps its pending samples this way."""
    if not width:
        return b""
    packed = array("d")
    for j in range(width):
        packed.extend(flat[j::width])  # column j: every row's j-th value
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        packed.byteswap()
    return packed.tobytes()


def unpack_values(values: bytes, n: int) -> list[list[float | None]]:
    """``pack_values`` undone: columns of ``n`` values, NaN back to None."""
    flat = array("d")
    flat.frombytes(values)
    if sys.byteorder == "big":  # pragma: no cover
        flat.byteswap()
    out = [flat[i:i + n].tolist() for i in range(0, len(flat), n)] if n else []
    return [[None if v != v else v for v in col] for col in out]


class FrameBuffer:
    """Splits a byte stream into newline-terminated frames, bounded in size.

    ``feed()`` returns the complete frames received so far. A frame longer than
    ``max_frame`` raises ``FrameTooLarge`` as soon as that many bytes arrive
    without a newline, so a peer cannot make us buffer without bound.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = b""
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        if b"\n" not in data:
            if len(buf) > self.max_frame:
                self._buf = b""
                raise FrameTooLarge(f"frame exceeds {self.max_frame} bytes")
            self._buf = buf
            return []
        *frames, rest = buf.split(b"\n")
        if len(rest) > self.max_frame or any(len(f) >= self.max_frame for f in frames):
            self._buf = b""
            raise FrameTooLarge(f"frame exceeds {self.max_frame} bytes")
        self._buf = rest
        return [f for f in frames if f.strip()]


class StreamFrames:
    """Frames from a stream reader (anything with ``async read(n) -> bytes``)."""

    def __init__(self, reader: Any, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._reader = reader
        self._buffer = FrameBuffer(max_frame)
        self._ready: deque[bytes] = deque()

    async def next(self) -> bytes | None:
        """The next frame, or None at end of stream."""
        while not self._ready:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._ready.extend(self._buffer.feed(data))
        return self._ready.popleft()
