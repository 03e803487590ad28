"""One machine's time series and the charts drawn from them. Pure.

``Series`` holds the samples of one window: history from ``metrics NAME``
(raw samples, or 1-minute rollups for long windows) plus the live values
pushed by the subscription. ``charts(series, ...)`` groups the metric keys
into charts (one per stream; per core and per GPU where that matters) and
reduces each line to at most one point per bucket, so drawing costs the
same whatever the window.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable

from centrality_core.summary import split_key
from centrality_core.timefmt import parse_iso

GIB = float(1 << 30)
MIB = float(1 << 20)

#: Window keys: name -> (seconds, resolution asked of ``metrics``).
WINDOWS: dict[str, tuple[int, str]] = {
    "1m": (60, "raw"), "10m": (600, "raw"), "1h": (3600, "1m"), "24h": (86400, "1m"),
}
MAX_CORE_LINES = 16  # more cores than this: min / median / max across cores
MAX_DEVICE_LINES = 3  # more disks or NICs than this: totals


class Series:
    """Samples over a window: one timestamp list and one aligned column per key."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.ts: list[float] = []
        self.columns: dict[str, list[float | None]] = {}

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def last_ts(self) -> float:
        return self.ts[-1] if self.ts else 0.0

    def load(self, rows: Iterable[dict]) -> None:
        """History from ``metrics`` (``[{"ts": ISO, key: value}]``); rollup min/max are ignored."""
        self.ts, self.columns = [], {}
        parsed = []
        for row in rows:
            try:
                parsed.append((parse_iso(row["ts"]), row))
            except (KeyError, TypeError, ValueError):
                continue
        parsed.sort(key=lambda p: p[0])
        for ts, row in parsed:
            self._append(ts, {k: v for k, v in row.items() if k != "ts" and ":" not in k})

    def add(self, ts: float, values: dict) -> bool:
        """A live sample; ignored unless newer than the last one."""
        if ts <= self.last_ts:
            return False
        self._append(ts, values)
        return True

    def _append(self, ts: float, values: dict) -> None:
        n = len(self.ts)
        self.ts.append(ts)
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            col = self.columns.get(key)
            if col is None:
                col = self.columns[key] = [None] * n
            col.append(float(value))
        for col in self.columns.values():
            if len(col) == n:
                col.append(None)

    def trim(self, now: float) -> None:
        """Drop samples older than the window."""
        start = now - self.window_s
        cut = 0
        while cut < len(self.ts) and self.ts[cut] < start:
            cut += 1
        if cut:
            del self.ts[:cut]
            for col in self.columns.values():
                del col[:cut]

    def latest(self, key: str) -> float | None:
        col = self.columns.get(key)
        if not col:
            return None
        for v in reversed(col):
            if v is not None:
                return v
        return None


@dataclass
class Line:
    label: str
    xs: list[float]  # seconds relative to now (<= 0)
    ys: list[float]


@dataclass
class Chart:
    id: str
    title: str
    unit: str
    lines: list[Line] = field(default_factory=list)
    ymax: float | None = None  # fixed top of the y axis (100 for percentages)
    kind: str = "lines"  # "strips": one row per line (small multiples), for lines that would overlap

    def top(self) -> float:
        """The top of the y axis: ``ymax``, else a round number above every value."""
        if self.ymax is not None:
            return self.ymax
        return nice_axis(max((max(line.ys) for line in self.lines if line.ys), default=1.0))[0]

    @property
    def empty(self) -> bool:
        return not any(line.ys for line in self.lines)


Column = Callable[[int], "float | None"]


def _instances(keys: Iterable[str], stream: str, fld: str) -> list[str]:
    found = {split_key(k).instance for k in keys if k.startswith(stream + "[") and k.endswith("]." + fld)}
    return sorted(found, key=lambda i: (len(i), i) if i.isdigit() else (0, i))


def data_span(series: Series, now: float, least: float = 60.0) -> float:
    """Seconds the charts show: the window, or less when the data there is covers less of it
    (a machine that joined 3 minutes ago fills a 10-minute chart, not its right 30 %)."""
    window = series.window_s
    if not series.ts:
        return window
    covered = now - series.ts[0]
    return max(min(least, window), min(window, covered * 1.02))


def _bucketed(series: Series, values: Callable[[int], float | None], now: float, buckets: int,
              scale: float = 1.0, span: float | None = None) -> tuple[list[float], list[float]]:
    """Mean per bucket over the last ``span`` seconds (the window); empty buckets are left out."""
    window = span or series.window_s
    start = now - window
    width = window / buckets
    sums = [0.0] * buckets
    counts = [0] * buckets
    for i, ts in enumerate(series.ts):
        if ts < start:
            continue
        v = values(i)
        if v is None:
            continue
        b = min(buckets - 1, int((ts - start) / width))
        sums[b] += v
        counts[b] += 1
    xs, ys = [], []
    for b in range(buckets):
        if counts[b]:
            xs.append(-window + (b + 0.5) * width)
            ys.append(sums[b] / counts[b] * scale)
    return xs, ys


def _col(series: Series, key: str) -> Callable[[int], float | None]:
    col = series.columns.get(key)
    if col is None:
        return lambda i: None
    return col.__getitem__


def _sum_of(series: Series, keys: list[str]) -> Callable[[int], float | None]:
    cols = [series.columns[k] for k in keys if k in series.columns]

    def value(i: int) -> float | None:
        vals = [c[i] for c in cols if c[i] is not None]
        return sum(vals) if vals else None

    return value


def _across(series: Series, keys: list[str], how: Callable[[list[float]], float]) -> Callable[[int], float | None]:
    cols = [series.columns[k] for k in keys if k in series.columns]

    def value(i: int) -> float | None:
        vals = [c[i] for c in cols if c[i] is not None]
        return how(vals) if vals else None

    return value


def charts(series: Series, now: float, buckets: int = 120, info: dict | None = None,
           span: float | None = None) -> list[Chart]:
    """Every chart this machine's streams make, in display order; charts without data are left out.

    ``span``: the seconds shown (``data_span``), the window by default. Several GPUs' lines
    are drawn as strips, one row per GPU (they would lie on top of each other as lines)."""
    keys = list(series.columns)
    info = info or {}
    out: list[Chart] = []

    def chart(cid: str, title: str, unit: str, lines: list[tuple[str, Column]], ymax: float | None = None,
              scale: float = 1.0) -> None:
        c = Chart(cid, title, unit, ymax=ymax)
        for label, fn in lines:
            xs, ys = _bucketed(series, fn, now, buckets, scale, span)
            if ys:
                c.lines.append(Line(label, xs, ys))
        if cid.startswith("gpu_") and len(c.lines) > 1:
            c.kind = "strips"
        if not c.empty:
            out.append(c)

    chart("cpu", "CPU %", "%", [("all cores", _col(series, "cpu.percent"))], ymax=100)
    cores = [f"cpu[{i}].percent" for i in _instances(keys, "cpu", "percent")]
    if cores:
        if len(cores) <= MAX_CORE_LINES:
            chart("cores", f"CPU per core % ({len(cores)} cores)", "%",
                  [(split_key(k).instance, _col(series, k)) for k in cores], ymax=100)
        else:
            chart("cores", f"CPU per core % ({len(cores)} cores: busiest, median, idlest)", "%",
                  [("max", _across(series, cores, max)), ("median", _across(series, cores, statistics.median)),
                   ("min", _across(series, cores, min))], ymax=100)
    total = series.latest("mem.total_bytes") or info.get("memory_total_bytes")
    chart("mem", f"Memory % used{f' (of {_size(total)})' if total else ''}", "%",
          [("used", _col(series, "mem.percent"))], ymax=100)

    gpus = _instances(keys, "gpu", "util_percent")
    if gpus:
        chart("gpu_util", f"GPU utilisation % ({len(gpus)} GPUs)", "%",
              [(f"gpu{g}", _col(series, f"gpu[{g}].util_percent")) for g in gpus], ymax=100)
        gtotal = series.latest(f"gpu[{gpus[0]}].mem_total_bytes")
        chart("gpu_mem", f"GPU memory used GiB{f' (of {gtotal / GIB:.1f} GiB each)' if gtotal else ''}", "GiB",
              [(f"gpu{g}", _col(series, f"gpu[{g}].mem_used_bytes")) for g in gpus],
              ymax=gtotal / GIB if gtotal else None, scale=1 / GIB)
        chart("gpu_temp", "GPU temperature °C", "°C",
              [(f"gpu{g}", _col(series, f"gpu[{g}].temp_c")) for g in gpus])
        chart("gpu_power", "GPU power W", "W", [(f"gpu{g}", _col(series, f"gpu[{g}].power_w")) for g in gpus])

    mounts = _instances(keys, "fs", "percent")
    chart("fs", "Filesystems % used", "%", [(m, _col(series, f"fs[{m}].percent")) for m in mounts], ymax=100)

    disks = _instances(keys, "disk", "read_bytes_per_s")
    if disks:
        chart("disk_bytes", "Disk throughput MiB/s", "MiB/s",
              _per_device(series, disks, "disk", ("read_bytes_per_s", "read"), ("write_bytes_per_s", "write")),
              scale=1 / MIB)
        chart("disk_iops", "Disk IOPS", "IOPS",
              _per_device(series, disks, "disk", ("read_iops", "read"), ("write_iops", "write")))
    nics = _instances(keys, "net", "recv_bytes_per_s")
    if nics:
        chart("net", "Network MiB/s", "MiB/s",
              _per_device(series, nics, "net", ("recv_bytes_per_s", "recv"), ("sent_bytes_per_s", "sent")),
              scale=1 / MIB)
    return out


def _per_device(series: Series, devices: list[str], stream: str, *fields: tuple[str, str]) -> list[tuple[str, Column]]:
    if len(devices) <= MAX_DEVICE_LINES:
        return [(f"{d} {label}", _col(series, f"{stream}[{d}].{fld}")) for d in devices for fld, label in fields]
    return [(f"{label} (all {len(devices)})", _sum_of(series, [f"{stream}[{d}].{fld}" for d in devices]))
            for fld, label in fields]


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB / 1024:.1f} TiB" if nbytes >= 1024 * GIB else f"{nbytes / GIB:.1f} GiB"


def nice_axis(top: float, most: int = 5) -> tuple[float, list[float]]:
    """A round top for an axis from 0 to at least ``top``, and its ticks (at most ``most``):
    ``nice_axis(805)`` is ``(1000, [0, 250, 500, 750, 1000])``, ``nice_axis(100)`` ends at 100."""
    if not top or top <= 0 or top != top:
        top = 1.0
    magnitude = 10 ** math.floor(math.log10(top / max(1, most - 1)))
    for step in (magnitude * m for m in (1, 2, 2.5, 5, 10, 20, 25, 50)):
        n = math.ceil(top / step - 1e-9)
        if n <= most - 1:
            break
    ticks = [round(i * step, 10) for i in range(n + 1)]
    return ticks[-1], ticks


def tick_text(value: float) -> str:
    """``25``, ``2.5``, ``0.25``: no trailing ``.0``."""
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


#: Steps between time ticks, in seconds: round in the units they are read in.
TIME_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def tick_labels(window_s: float, count: int = 5) -> tuple[list[float], list[str]]:
    """X-axis ticks for a span ending now, at round steps: ``-10m -7.5m ... now`` is
    ``-10m -8m -6m -4m -2m now``; 153 s is ``-2m -1.5m -1m -30s now``. At most ``count + 1``."""
    step = next((st for st in TIME_STEPS if window_s / st <= count), TIME_STEPS[-1])
    if window_s % step == 0 and window_s / step <= count:  # the window is itself round: from its start
        n = int(window_s // step)
    else:
        n = int(window_s // step + 1e-9)
    ticks = [-(n - i) * step for i in range(n + 1)]
    return [float(t) for t in ticks], ["now" if t == 0 else _ago(-t) for t in ticks]


def _ago(seconds: float) -> str:
    if seconds >= 3600:
        v, unit = seconds / 3600, "h"
    elif seconds >= 60:
        v, unit = seconds / 60, "m"
    else:
        v, unit = seconds, "s"
    return f"-{v:.0f}{unit}" if abs(v - round(v)) < 0.05 else f"-{v:.1f}{unit}"
