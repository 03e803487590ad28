"""Pure parsers of ``nvidia-smi`` output: CSV query, ``-q -x`` XML, the plain screen.

No process is run here (see ``gpu.py``). Every parser returns ``GpuReading``
records and never raises on odd input: a value it cannot read (``[N/A]``,
``[Not Supported]``, ``N/A``, ``ERR!``...) is left as ``None``/``""``, a line
it cannot read is skipped, garbage gives ``[]``.

Units in ``GpuReading``: percent 0-100, bytes, degrees Celsius, watts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MIB = 1024 * 1024
_UNIT_BYTES = {"B": 1, "KIB": 1024, "MIB": MIB, "GIB": 1024 * MIB, "TIB": 1024 * 1024 * MIB}

#: The columns the collector asks for (``--query-gpu=`` + ``QUERY_FIELDS``).
QUERY_FIELDS: tuple[str, ...] = (
    "index", "name", "uuid", "utilization.gpu", "memory.used", "memory.total",
    "temperature.gpu", "power.draw",
)
QUERY_ARGV: tuple[str, ...] = (
    "nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits",
)


@dataclass(slots=True)
class GpuReading:
    """One GPU at one instant. ``None`` means "not reported by this source"."""

    index: int
    name: str = ""
    uuid: str = ""
    util_percent: float | None = None
    mem_used_bytes: float | None = None
    mem_total_bytes: float | None = None
    #: nvidia-smi "utilization.memory": % of time device memory was read/written.
    mem_busy_percent: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    driver_version: str = ""
    #: Other fields as text (source-specific: csv column names, xml "pci_bus_id"...).
    extra: dict[str, str] = field(default_factory=dict)


def readings_to_sample(readings: list[GpuReading]) -> dict[str, float]:
    """``gpu[i].*`` sample keys. ``mem_util_percent`` = used / total * 100 (framebuffer in use)."""
    out: dict[str, float] = {}
    for r in readings:
        p = f"gpu[{r.index}]."
        if r.util_percent is not None:
            out[p + "util_percent"] = r.util_percent
        if r.mem_used_bytes is not None:
            out[p + "mem_used_bytes"] = r.mem_used_bytes
        if r.mem_total_bytes is not None:
            out[p + "mem_total_bytes"] = r.mem_total_bytes
            if r.mem_used_bytes is not None and r.mem_total_bytes > 0:
                out[p + "mem_util_percent"] = min(100.0, 100.0 * r.mem_used_bytes / r.mem_total_bytes)
        if r.temp_c is not None:
            out[p + "temp_c"] = r.temp_c
        if r.power_w is not None:
            out[p + "power_w"] = r.power_w
    return out


def readings_to_info(readings: list[GpuReading]) -> list[dict]:
    """Inventory entries ``{index, name, uuid, memory_total_bytes}`` for machine info."""
    return [
        {"index": r.index, "name": r.name, "uuid": r.uuid, "memory_total_bytes": int(r.mem_total_bytes or 0)}
        for r in readings
    ]


# ------------------------------------------------------------------ values

_NUM = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z%]*)\s*$")


def _missing(v: str) -> bool:
    return not v or v.startswith("[") or v.upper() in ("N/A", "ERR!", "UNKNOWN", "NOT SUPPORTED")


def _text(v: str | None) -> str:
    v = (v or "").strip()
    return "" if _missing(v) else v


def _number(v: str | None) -> float | None:
    """``"81559 MiB"`` -> 81559.0, ``"433.78 W"`` -> 433.78, ``"[N/A]"`` -> None."""
    m = _NUM.match(v or "")
    return float(m.group(1)) if m else None


def _bytes(v: str | None, default_unit: str = "MiB") -> float | None:
    m = _NUM.match(v or "")
    if not m:
        return None
    mult = _UNIT_BYTES.get((m.group(2) or default_unit).upper())
    return float(m.group(1)) * mult if mult else None


# ------------------------------------------------------------------ errors

_ERRORS: tuple[tuple[str, str], ...] = (
    ("couldn't communicate with the nvidia driver",
     "NVIDIA driver not loaded: nvidia-smi couldn't communicate with the NVIDIA driver"),
    ("no devices were found", "no NVIDIA GPU found: the driver is loaded but found no usable device"),
    ("driver/library version mismatch", "NVIDIA driver/library version mismatch (reload the driver or reboot)"),
    ("couldn't find libnvidia-ml", "NVML library (libnvidia-ml.so) not found: driver not installed"),
    ("unable to determine the device handle", ""),
    ("gpu is lost", ""),
    ("failed to initialize nvml", ""),
    ("nvidia-smi has failed", ""),
)


def detect_error(text: str) -> str | None:
    """A reason string if ``text`` is an nvidia-smi failure message, else ``None``.

    Only the first non-blank line is examined, so a value like ``[GPU is lost]``
    in one row of otherwise good output is not mistaken for a global failure.
    """
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    low = first.lower()
    for needle, reason in _ERRORS:
        if needle in low:
            return reason or "nvidia-smi failed: " + first[:200]
    return None


# ------------------------------------------------------------------ CSV

_UNIT_SUFFIX = re.compile(r"^(.*?)\s*\[([^\]]*)\]$")
_KNOWN = frozenset(QUERY_FIELDS) | {
    "driver_version", "memory.free", "utilization.memory", "pci.bus_id", "timestamp", "pstate",
}


def _split_header(cells: list[str]) -> tuple[list[str], list[str]] | None:
    """Field names and ``[unit]`` suffixes if ``cells`` is a header line, else None.

    A header is recognised by naming at least one well-known field; values
    (numbers, GPU names, UUIDs, ``[N/A]``) never do.
    """
    names, units = [], []
    for c in cells:
        m = _UNIT_SUFFIX.match(c)
        names.append(m.group(1) if m else c)
        units.append(m.group(2) if m else "")
    return (names, units) if any(n in _KNOWN for n in names) else None


def parse_query_csv(text: str, fields: tuple[str, ...] | list[str] | None = None) -> list[GpuReading]:
    """``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` -> readings.

    A header line, when present, names the columns (and gives units for
    ``nounits`` output); otherwise ``fields`` does, defaulting to
    ``QUERY_FIELDS``. A row whose column count differs is skipped. Without an
    ``index`` column a GPU's index is its row number. Memory without a unit
    is taken as MiB (nvidia-smi's unit).
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    names: list[str] = list(fields or QUERY_FIELDS)
    units: list[str] = [""] * len(names)
    header = _split_header([c.strip() for c in lines[0].split(",")])
    if header is not None:
        names, units = header
        lines = lines[1:]
    out: list[GpuReading] = []
    for row, line in enumerate(lines):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(names):
            continue
        raw = dict(zip(names, cells))
        unit = dict(zip(names, units))
        idx = _number(raw.get("index"))
        r = GpuReading(index=int(idx) if idx is not None else row)
        r.name = _text(raw.get("name"))
        r.uuid = _text(raw.get("uuid"))
        r.driver_version = _text(raw.get("driver_version"))
        r.util_percent = _number(raw.get("utilization.gpu"))
        r.mem_busy_percent = _number(raw.get("utilization.memory"))
        r.mem_used_bytes = _bytes(raw.get("memory.used"), unit.get("memory.used") or "MiB")
        r.mem_total_bytes = _bytes(raw.get("memory.total"), unit.get("memory.total") or "MiB")
        r.temp_c = _number(raw.get("temperature.gpu"))
        for key in ("power.draw", "power.draw.average", "power.draw.instant"):
            r.power_w = _number(raw.get(key))
            if r.power_w is not None:
                break
        r.extra = {k: v for k, v in raw.items() if not _missing(v)}
        out.append(r)
    return out


# ------------------------------------------------------------------ XML


def parse_xml(text: str) -> list[GpuReading]:
    """``nvidia-smi -q -x`` (DTD v11-v13) -> readings, ``[]`` if not that XML.

    ``index`` is the ``<gpu>`` element's position, which is nvidia-smi's own
    enumeration order (PCI bus order); ``minor_number`` (the /dev/nvidiaN
    number) can differ and is kept in ``extra``. Power is the average draw
    when the driver gives one (as ``power.draw`` does), else the instant one.
    """
    import xml.etree.ElementTree as ET  # lazy: only hosts that use the XML pay for it

    try:
        root = ET.fromstring(text)
    except (ET.ParseError, ValueError):
        return []
    if root.tag != "nvidia_smi_log":
        return []
    driver = _text(root.findtext("driver_version"))
    cuda = _text(root.findtext("cuda_version"))
    out: list[GpuReading] = []
    for i, g in enumerate(root.findall("gpu")):
        r = GpuReading(index=i, driver_version=driver)
        r.name = _text(g.findtext("product_name"))
        r.uuid = _text(g.findtext("uuid"))
        r.mem_total_bytes = _bytes(g.findtext("fb_memory_usage/total"))
        r.mem_used_bytes = _bytes(g.findtext("fb_memory_usage/used"))
        r.util_percent = _number(g.findtext("utilization/gpu_util"))
        r.mem_busy_percent = _number(g.findtext("utilization/memory_util"))
        r.temp_c = _number(g.findtext("temperature/gpu_temp"))
        for path in ("power_readings/power_draw", "gpu_power_readings/average_power_draw",
                     "gpu_power_readings/instant_power_draw"):
            r.power_w = _number(g.findtext(path))
            if r.power_w is not None:
                break
        extra = {"pci_bus_id": g.get("id", ""), "minor_number": _text(g.findtext("minor_number")),
                 "cuda_version": cuda, "processes": str(len(g.findall("processes/process_info")))}
        r.extra = {k: v for k, v in extra.items() if v}
        out.append(r)
    return out


# ------------------------------------------------------------------ screen

_GPU_CELL = re.compile(r"^\s*(\d+)\s+(.*?\S)\s+(On|Off|N/A|WDDM|TCC)\s*$")
_BUS_CELL = re.compile(r"^\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\b")
_TEMP = re.compile(r"\b(\d+)C\b")
_POWER = re.compile(r"(\d+(?:\.\d+)?)W\s*/")
_MEM = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")
_UTIL = re.compile(r"^\s*(\d+)%")
_DRIVER = re.compile(r"Driver Version:\s*(\S+)")
_CUDA = re.compile(r"CUDA Version:\s*(\S+)")


def _cells(line: str) -> list[str]:
    s = line.strip()
    return s.strip("|").split("|") if s.startswith("|") else []


def parse_screen(text: str) -> list[GpuReading]:
    """The plain ``nvidia-smi`` table -> readings (name, memory, util, temp, power).

    Handles the pre-2023 narrow layout and the newer wide one; a cell showing
    ``N/A`` or ``ERR!`` leaves that value ``None``. Process and MIG tables are
    ignored. Driver and CUDA versions come from the banner line.
    """
    m = _DRIVER.search(text)
    driver = m.group(1) if m else ""
    m = _CUDA.search(text)
    cuda = m.group(1) if m else ""
    lines = text.splitlines()
    out: list[GpuReading] = []
    for i, line in enumerate(lines):
        cells = _cells(line)
        if len(cells) < 3 or not _BUS_CELL.match(cells[1]):
            continue
        g = _GPU_CELL.match(cells[0])
        if not g:
            continue
        r = GpuReading(index=int(g.group(1)), name=g.group(2), driver_version=driver)
        r.extra = {"pci_bus_id": cells[1].split()[0], "persistence_mode": g.group(3)}
        if cuda:
            r.extra["cuda_version"] = cuda
        nxt = _cells(lines[i + 1]) if i + 1 < len(lines) else []
        if len(nxt) >= 3:
            if t := _TEMP.search(nxt[0]):
                r.temp_c = float(t.group(1))
            if p := _POWER.search(nxt[0]):
                r.power_w = float(p.group(1))
            if mm := _MEM.search(nxt[1]):
                r.mem_used_bytes = float(mm.group(1)) * MIB
                r.mem_total_bytes = float(mm.group(2)) * MIB
            if u := _UTIL.match(nxt[2]):
                r.util_percent = float(u.group(1))
        out.append(r)
    return out
