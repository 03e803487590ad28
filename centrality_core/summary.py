"""Metric keys, and the one-line summary of a machine that tables show.

Keys look like ``stream.field`` or ``stream[instance].field``; units are in
the field name (``_percent``, ``_bytes``, ``_bytes_per_s``). ``summarize``
turns one sample into the figures of ``centrality top`` and the dashboard.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import Iterable, NamedTuple


class Key(NamedTuple):
    stream: str
    instance: str  # "" for machine-wide keys
    field: str


def split_key(key: str) -> Key:
    """``gpu[3].util_percent`` -> ("gpu", "3", "util_percent"). Instances may contain dots."""
    if "[" in key:
        stream, _, rest = key.partition("[")
        instance, _, field = rest.rpartition("].")
        return Key(stream, instance, field)
    stream, _, field = key.partition(".")
    return Key(stream, "", field)


def select(keys: Iterable[str], patterns: list[str] | None) -> list[str]:
    """Keys matching any pattern: a stream name (``cpu``), an exact key or a glob.

    In a glob ``*`` and ``?`` are wildcards and brackets are the key's own, so
    ``gpu[*].temp_c`` and ``cpu[1?].percent`` mean what they look like; a
    pattern that only matches as an ``fnmatch`` character class (``cpu[[]0]*``)
    still does.
    """
    keys = list(keys)
    if not patterns:
        return keys
    globs = [_glob(p) for p in patterns]
    out = []
    for k in keys:
        stream = split_key(k).stream
        if any(p == stream or p == k or g.fullmatch(k) or fnmatch.fnmatchcase(k, p)
               for p, g in zip(patterns, globs)):
            out.append(k)
    return out


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern:
    """``*`` any run, ``?`` one character, everything else literal (brackets included)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                      re.DOTALL)


class Summary(NamedTuple):
    """One machine at a glance. None where the machine has no such stream."""

    cpu_percent: float | None
    mem_percent: float | None
    gpu_util_percent: float | None
    gpu_mem_percent: float | None
    disk_percent: float | None  # the fullest filesystem
    net_bytes_per_s: float | None  # received + sent, all interfaces
    gpu_count: int


EMPTY = Summary(None, None, None, None, None, None, 0)


def summarize(values: dict[str, float]) -> Summary:
    """The figures of one sample that tables show. Runs once per batch per
    machine on the control plane, so it matches key suffixes rather than
    parsing every key."""
    gpu_util: list[float] = []
    gpu_used = gpu_total = 0.0
    disk = net = None
    for key, v in values.items():
        if v is None:
            continue
        first = key[0]
        if first == "g" and key.startswith("gpu["):
            if key.endswith("].util_percent"):
                gpu_util.append(v)
            elif key.endswith("].mem_used_bytes"):
                gpu_used += v
            elif key.endswith("].mem_total_bytes"):
                gpu_total += v
        elif first == "f" and key.startswith("fs[") and key.endswith("].percent"):
            disk = v if disk is None or v > disk else disk
        elif first == "n" and key.startswith("net[") and (
                key.endswith("].recv_bytes_per_s") or key.endswith("].sent_bytes_per_s")):
            net = (net or 0.0) + v
    return Summary(
        cpu_percent=values.get("cpu.percent"),
        mem_percent=values.get("mem.percent"),
        gpu_util_percent=sum(gpu_util) / len(gpu_util) if gpu_util else None,
        gpu_mem_percent=100.0 * gpu_used / gpu_total if gpu_total else None,
        disk_percent=disk,
        net_bytes_per_s=net,
        gpu_count=len(gpu_util),
    )
