"""The one place agent-supplied text is made safe: right after a message is decoded.

Every string an agent sends (names, hostnames and other machine info, labels,
health details, command output, error reasons, nvidia-smi screens) may reach
an operator's terminal, a log line, the store or another tool. ``clean`` runs
``centrality_core.sanitize.for_terminal`` over every string field of a
decoded message, recursively, so nothing downstream sees an escape sequence,
a control character (newline and tab excepted) or a bidi control.

Metric batches are the hot path and are not walked here: their keys are
identifiers and are refused when unsafe (``ingest.py``, checked once per new
key list), and their text streams and GPU process lists are cleaned there.
Messages whose schema holds no string at all (a heartbeat: two numbers) are
not walked either (``needs_cleaning``, read off the schema, not listed by hand).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from centrality_core import sanitize
from centrality_core.sanitize import for_terminal


def clean(value: Any) -> Any:
    """``value`` with every string in it sanitised (Structs are changed in place)."""
    return sanitize.clean(value)


def clean_text(text: dict[str, str]) -> dict[str, str]:
    """A metric batch's text streams, sanitised."""
    return {for_terminal(k, keep_newlines=False): for_terminal(v) for k, v in text.items()}


def _holds_text(t: Any, seen: set[int]) -> bool:
    """Can a value of this (``msgspec.inspect``) type hold a string anywhere?"""
    import msgspec.inspect as mi

    if isinstance(t, (mi.StrType, mi.AnyType, mi.CustomType)):  # custom: unknown, walk it
        return True
    if id(t) in seen:  # a type that contains itself: looked at already
        return False
    seen.add(id(t))
    if isinstance(t, (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)):
        return any(_holds_text(f.type, seen) for f in t.fields)
    if isinstance(t, mi.UnionType):
        return any(_holds_text(u, seen) for u in t.types)
    if isinstance(t, mi.DictType):
        return _holds_text(t.key_type, seen) or _holds_text(t.value_type, seen)
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return _holds_text(t.item_type, seen)
    if isinstance(t, mi.TupleType):
        return any(_holds_text(u, seen) for u in t.item_types)
    return False  # numbers, booleans, bytes, None, literals and enums fixed by the schema


@cache
def needs_cleaning(cls: type) -> bool:
    """Does a decoded message of this class need ``clean`` (may it carry any string)?"""
    import msgspec.inspect

    return _holds_text(msgspec.inspect.type_info(cls), set())
