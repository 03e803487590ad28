"""Short strings for table cells: percentages, rates, ages, sparklines. Pure."""

from __future__ import annotations

SPARK_CHARS = "▁▂▃▄▅▆▇█"
MISSING = 255  # a sparkline sample with no value


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def rate(bytes_per_s: float | None) -> str:
    """Binary units, explicit: ``512 B/s``, ``3.4 KiB/s``, ``12 MiB/s``, ``1.2 GiB/s``."""
    if bytes_per_s is None:
        return "-"
    value = max(0.0, bytes_per_s)
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if value < 1024 or unit == "GiB/s":
            break
        value /= 1024
    if unit == "B/s":
        return f"{value:.0f} B/s"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def size(nbytes: float | None) -> str:
    """``512 B``, ``64.0 GiB``, ``1.8 TiB``."""
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def age(seconds: float | None) -> str:
    """A heartbeat age: ``0.4s``, ``12s``, ``3m``, ``2h``, ``5d``."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m"
    if s < 86400:
        return f"{s // 3600:.0f}h"
    return f"{s // 86400:.0f}d"


def quantize(value: float | None) -> int:
    """A percentage as one byte of a sparkline (``MISSING`` when there is none)."""
    if value is None:
        return MISSING
    return int(min(100.0, max(0.0, value)) + 0.5)


def spark(samples: bytes, width: int) -> str:
    """The last ``width`` samples (0-100, or MISSING) as block characters, right-aligned."""
    tail = samples[-width:]
    out = []
    for q in tail:
        if q == MISSING:
            out.append(" ")
        else:
            out.append(SPARK_CHARS[min(7, q * 8 // 101)])
    return "".join(out).rjust(width)


def labels(value: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
