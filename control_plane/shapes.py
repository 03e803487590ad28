"""Latest values packed for a subscription: ``subscribe --values``.

Each machine's newest sample travels as its float64 array (base64 in the
JSON, NaN where a key has no value) plus a *shape* number; the shape's key
list is sent once per subscription, the first time a row uses it. Machines of
one kind share one key list in the control plane (``Metrics.shared_keys``),
so 10,000 machines of a few kinds cost a few key lists and 8 bytes a value.

``ShapeTable`` remembers, per subscription, which key lists it has sent. It
holds a reference to each list, so an ``id()`` stays the list's while it is
in the table. It is bounded (an agent that changes its keys every batch would
otherwise grow it): past ``max_keys`` it forgets everything and says so
(``shapes_reset``), and the client forgets its shapes before reading the
document's new ones. Shape numbers are
never reused.
"""

from __future__ import annotations

import sys
from typing import Any

#: Keys remembered per subscription before the table starts over.
MAX_KEYS = 200_000


class ShapeTable:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._ids: dict[int, tuple[list[str], int]] = {}
        self._held = 0
        self._next = 0
        self._new: dict[str, list[str]] = {}
        self._reset = False

    def shape_of(self, keys: list[str]) -> int:
        known = self._ids.get(id(keys))
        if known is not None and known[0] is keys:
            return known[1]
        if self._held + len(keys) > self.max_keys and self._ids:
            # Forget what was sent before; shapes not yet sent stay pending, since
            # rows of the document being built already refer to them.
            self._ids.clear()
            self._held = 0
            self._reset = True
        sid = self._next
        self._next += 1
        self._ids[id(keys)] = (keys, sid)
        self._held += len(keys)
        self._new[str(sid)] = keys
        return sid

    def take(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Add the shapes first used since the last document (and a reset) to ``doc``."""
        if self._reset:
            doc["shapes_reset"] = True
            self._reset = False
        if self._new:
            doc["shapes"] = self._new
            self._new = {}
        return doc


def add_values(row: dict, latest: Any, table: ShapeTable) -> dict:
    """Put the machine's latest sample in its fleet row: ``shape`` and packed ``values``."""
    if latest is None or latest.row is None:
        return row
    a = latest.row
    if sys.byteorder != "little" or a.dtype.str != "<f8":
        a = a.astype("<f8")
    row["shape"] = table.shape_of(latest.keys)
    row["values"] = a.tobytes()
    return row
