"""Per-GPU rows of the fleet and the idle-GPU rule: pure, no I/O.

Used by the control plane's ``gpus`` request (and so by ``centrality gpus``).
A row is one GPU of one machine from its latest values (``gpu[i].*`` keys),
its inventory entry (model) and its latest process list (count, top user).

Idle: a GPU is idle over a window when every sample of the window shows 0 %
utilisation while at least ``HELD_BYTES`` of its memory is in use, and the
samples cover the window (the first one is within ``slack`` of its start).
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any, Iterable

#: Memory in use above which a GPU counts as held (an idle driver shows a few MiB,
#: a desktop a few hundred; a loaded model or a forgotten notebook, GiBs).
HELD_BYTES = 1 << 30
#: Below this utilisation a sample counts as 0 % (NVML and nvidia-smi report integers).
ZERO_UTIL = 1.0


@lru_cache(maxsize=65536)
def _gpu_index(key: str) -> int:
    """N of a ``gpu[N].field`` key, else -1 (keys repeat across machines: cached)."""
    if key.startswith("gpu[") and "]" in key:
        idx = key[4:key.index("]")]
        if idx.isdigit():
            return int(idx)
    return -1


def gpu_indexes(values: dict[str, float]) -> list[int]:
    """The GPU indexes that ``values`` has keys for, in order."""
    return sorted({i for i in map(_gpu_index, values) if i >= 0})


def _get(proc: Any, name: str) -> Any:
    return proc.get(name) if isinstance(proc, dict) else getattr(proc, name, None)


def process_stats(processes: Iterable[Any]) -> dict[int, tuple[int, str]]:
    """GPU index -> (process count, the user holding the most GPU memory on it)."""
    count: dict[int, int] = defaultdict(int)
    held: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for proc in processes:
        gpu = _get(proc, "gpu")
        if not isinstance(gpu, int):
            continue
        count[gpu] += 1
        user = _get(proc, "user") or ""
        if user:
            held[gpu][user] += _get(proc, "used_memory_bytes") or 0
    out = {}
    for gpu, n in count.items():
        users = held.get(gpu) or {}
        top = max(sorted(users), key=lambda u: users[u]) if users else ""
        out[gpu] = (n, top)
    return out


def gpu_rows(machine: str, state: str, values: dict[str, float], inventory: list[dict],
             processes: Iterable[Any] | None) -> list[dict]:
    """One JSON-ready row per GPU of ``machine``."""
    names = {g.get("index"): g.get("name", "") for g in inventory}
    totals = {g.get("index"): g.get("memory_total_bytes") for g in inventory}
    stats = process_stats(processes or ())
    rows = []
    for i in sorted(set(gpu_indexes(values)) | {k for k in names if isinstance(k, int)}):
        p = f"gpu[{i}]."
        used, total = values.get(p + "mem_used_bytes"), values.get(p + "mem_total_bytes") or totals.get(i)
        n, top = stats.get(i, (0, ""))
        rows.append({
            "machine": machine, "state": state, "index": i, "model": names.get(i, ""),
            "util_percent": values.get(p + "util_percent"),
            "mem_used_bytes": used, "mem_total_bytes": total or None,
            "mem_percent": round(100.0 * used / total, 2) if used is not None and total else None,
            "temp_c": values.get(p + "temp_c"), "power_w": values.get(p + "power_w"),
            "processes": n if processes is not None else None, "top_user": top,
        })
    return rows


def maybe_idle(row: dict) -> bool:
    """Could this GPU be idle now (0 % with memory held)? The cheap test before history."""
    util, used = row.get("util_percent"), row.get("mem_used_bytes")
    return util is not None and util < ZERO_UTIL and used is not None and used >= HELD_BYTES


def idle_over(samples: list[dict], index: int, since: float, slack: float) -> bool:
    """Whether GPU ``index`` was idle in every sample (``{"t": seconds, key: value}``)
    from ``since`` on; raw samples or 1-minute rollups (``key:max``/``key:min``)."""
    util_k, mem_k = f"gpu[{index}].util_percent", f"gpu[{index}].mem_used_bytes"
    first = None
    for s in samples:
        util = s.get(util_k + ":max", s.get(util_k))
        mem = s.get(mem_k + ":min", s.get(mem_k))
        if util is None and mem is None:
            continue
        if util is None or util >= ZERO_UTIL or mem is None or mem < HELD_BYTES:
            return False
        first = s["t"] if first is None else min(first, s["t"])
    return first is not None and first <= since + slack
