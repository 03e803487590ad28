"""The precision a metric really has, decided by its key's family.

Pure and light (the agent's fakes use it too). A key is ``stream[instance].field``
with the unit in the field name; the field's suffix decides how many decimal
digits are worth keeping:

=========================================  ======  ==============================================
field                                      digits  why
=========================================  ======  ==============================================
``*_bytes``, ``*_bytes_per_s``             0       bytes are whole; a rate in B/s below 1 B is noise
``util_percent``, ``mem_busy_percent``     0       NVML and nvidia-smi report whole percents
``temp_c``                                 0       GPU sensors report whole degrees
``power_w``                                2       nvidia-smi prints 0.01 W (NVML's mW rounded)
``*_iops``                                 0       whole operations counted over ~1 s
``cpu[N].percent`` (one core)              0       /proc counts 100 ticks a core-second: 1 %
                                                   is all one core's 1 s sample can resolve
``*percent`` (machine CPU, memory, fs)     1       averages over cores or huge totals: 0.1 %
anything else                              None    kept as a lossless float64
=========================================  ======  ==============================================

The store rounds every value to its key's digits (``numpy.round``, half to
even) and gives back exactly that.
"""

from __future__ import annotations

from functools import lru_cache

#: (field suffix, decimal digits), first match wins; order matters (util before percent).
RULES: tuple[tuple[str, int], ...] = (
    ("_bytes_per_s", 0),
    ("_bytes", 0),
    ("util_percent", 0),
    ("mem_busy_percent", 0),
    ("temp_c", 0),
    ("power_w", 2),
    ("_iops", 0),
    ("percent", 1),
)

#: Kept separately: ``mem_util_percent`` is framebuffer used / total (computed), 0.1 like other percents.
EXCEPTIONS: dict[str, int] = {"mem_util_percent": 1}


@lru_cache(maxsize=65536)
def digits(key: str) -> int | None:
    """Decimal digits kept for ``key``; None: no rule, the value is kept as it is."""
    stream, _, field = key.rpartition(".")
    if field == "percent" and stream.startswith("cpu["):
        return 0
    if field in EXCEPTIONS:
        return EXCEPTIONS[field]
    for suffix, d in RULES:
        if field.endswith(suffix):
            return d
    return None


def at_precision(key: str, value: float) -> float:
    """``value`` rounded as the store keeps it (``round(v * 10**d) / 10**d``, half to
    even, the same arithmetic as the store's numpy), in pure Python for the agent side."""
    d = digits(key)
    if d is None:
        return value
    scale = 10.0 ** d
    return round(value * scale) / scale
