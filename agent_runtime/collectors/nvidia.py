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


#: Values nvidia-smi prints in place of one it cannot read (with or without brackets).
_NOT_VALUES = frozenset({
    "N/A", "ERR!", "UNKNOWN", "UNKNOWN ERROR", "NOT SUPPORTED", "GPU IS LOST", "NOT AVAILABLE",
    "INSUFFICIENT PERMISSIONS", "GPU REQUIRES RESET", "NO DATA", "NONE",
})


def _missing(v: str) -> bool:
    u = v.upper()
    return (not v or v.startswith("[") or u in _NOT_VALUES or u.startswith("NOT AVAILABLE")
            or u.startswith("UNKNOWN ERROR"))


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
    return _nonneg(float(m.group(1)) * mult) if mult else None


def _nonneg(v: float | None) -> float | None:
    return v if v is not None and v >= 0 else None


def _percent(v: str | None) -> float | None:
    """A percentage in 0-100, else None (a garbled cell is no utilisation)."""
    x = _number(v)
    return x if x is not None and 0 <= x <= 100 else None


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
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
#: Fields naming a GPU table (``timestamp`` alone does not: every query has it).
_GPU_FIELDS = frozenset(QUERY_FIELDS) | {
    "driver_version", "memory.free", "memory.reserved", "utilization.memory", "pci.bus_id", "pstate",
    "serial", "count", "vbios_version", "fan.speed", "power.limit", "power.draw.average",
    "power.draw.instant", "clocks.sm", "clocks.current.sm", "compute_cap", "mig.mode.current",
    "temperature.memory", "persistence_mode", "pcie.link.gen.current",
}
#: Columns of the other queries (``--query-compute-apps``, ``--query-accounted-apps``,
#: ``--query-retired-pages``...): such a table is no GPU list.
_OTHER_TABLE_FIELDS = frozenset({
    "pid", "process_name", "used_gpu_memory", "used_memory", "gpu_utilization", "mem_utilization",
    "max_memory_usage", "time", "is_running", "retired_pages.address", "retired_pages.cause",
})
#: ``--query-gpu`` accepts these aliases and prints them as asked.
_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id", "gpu_serial": "serial"}


def split_csv_header(cells: list[str]) -> tuple[list[str], list[str]] | None:
    """Field names and ``[unit]`` suffixes if ``cells`` is a header line, else None.

    Every cell of a header is a field name (``memory.used [MiB]``) and one at
    least is a known field or dotted/underscored; values (numbers, GPU names,
    UUIDs, ``[N/A]``, ``Enabled``) are not.
    """
    names, units = [], []
    for c in cells:
        m = _UNIT_SUFFIX.match(c)
        name, unit = (m.group(1), m.group(2)) if m else (c, "")
        if not _FIELD_NAME.match(name):
            return None
        names.append(name)
        units.append(unit)
    known = _GPU_FIELDS | _OTHER_TABLE_FIELDS | {"timestamp", "index", "name", "uuid"}
    if not any(n in known or "." in n or "_" in n for n in names):
        return None
    return names, units


def _csv_rows(text: str, fields, default: tuple[str, ...]):
    """(names, units, rows of cells) of a CSV output; a header line wins over ``fields``.

    Repeated header lines (a ``-l`` log restarted) are skipped, as are rows whose
    column count differs from the header's.
    """
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    names: list[str] = list(fields or default)
    units: list[str] = [""] * len(names)
    header = split_csv_header([c.strip() for c in lines[0].split(",")]) if lines else None
    if header is not None:
        names, units = header
        lines = lines[1:]
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == len(names) and split_csv_header(cells) is None:
            rows.append(cells)
    return names, units, rows


def is_gpu_table(names: list[str] | tuple[str, ...]) -> bool:
    """True if CSV columns ``names`` are a ``--query-gpu`` table."""
    canon = {_ALIASES.get(n, n) for n in names}
    return bool(canon & _GPU_FIELDS) and not (canon & _OTHER_TABLE_FIELDS)


def parse_query_csv(text: str, fields: tuple[str, ...] | list[str] | None = None) -> list[GpuReading]:
    """``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` -> readings.

    A header line, when present, names the columns (and gives units for
    ``nounits`` output); otherwise ``fields`` does, defaulting to
    ``QUERY_FIELDS``. Another query's table (``--query-compute-apps``...) gives
    ``[]``. A ``-l`` log holds each GPU several times: the latest row of each
    GPU is kept, a GPU being known by its ``index``, else ``uuid``, else
    ``pci.bus_id``, else ``serial``; with none of those, by its position in
    the last ``timestamp`` group, else by its row. Without an ``index``
    column GPUs are numbered in the order they first appear. Memory without a
    unit is taken as MiB (nvidia-smi's unit).
    """
    names, units, rows = _csv_rows(text, fields, QUERY_FIELDS)
    if not rows or not is_gpu_table(names):
        return []
    names = [_ALIASES.get(n, n) for n in names]
    unit = dict(zip(names, units))
    keyed: dict[object, dict[str, str]] = {}
    ids = [k for k in ("index", "uuid", "pci.bus_id", "serial") if k in names]
    if not ids and "timestamp" in names:
        last = rows[-1][names.index("timestamp")]
        start = len(rows)
        while start > 0 and rows[start - 1][names.index("timestamp")] == last:
            start -= 1
        rows = rows[start:]
    for row, cells in enumerate(rows):
        raw = dict(zip(names, cells))
        key: object = row
        for k in ids:
            v = _text(raw.get(k))
            if v:
                key = (k, v)
                break
        keyed[key] = raw  # a later sample of the same GPU replaces it, in its first place
    out: list[GpuReading] = []
    for pos, raw in enumerate(keyed.values()):
        idx = _number(raw.get("index"))
        r = GpuReading(index=int(idx) if idx is not None and idx >= 0 else pos)
        r.name = _text(raw.get("name"))
        r.uuid = _text(raw.get("uuid"))
        r.driver_version = _text(raw.get("driver_version"))
        r.util_percent = _percent(raw.get("utilization.gpu"))
        r.mem_busy_percent = _percent(raw.get("utilization.memory"))
        r.mem_used_bytes = _bytes(raw.get("memory.used"), unit.get("memory.used") or "MiB")
        r.mem_total_bytes = _bytes(raw.get("memory.total"), unit.get("memory.total") or "MiB")
        r.temp_c = _number(raw.get("temperature.gpu"))
        for k in ("power.draw", "power.draw.average", "power.draw.instant"):
            r.power_w = _nonneg(_number(raw.get(k)))
            if r.power_w is not None:
                break
        r.extra = {k: v for k, v in raw.items() if not _missing(v)}
        out.append(r)
    return sorted(out, key=lambda r: r.index) if "index" in names else out


# ------------------------------------------------------------------ XML


#: Where each DTD keeps the board's draw: v11 and earlier ``power_readings``; 535-era
#: v12 ``gpu_power_readings/power_draw``; v12 of 550+ and v13 average/instant.
_XML_POWER = (
    "power_readings/power_draw", "gpu_power_readings/power_draw", "gpu_power_readings/average_power_draw",
    "gpu_power_readings/instant_power_draw", "power_readings/average_power_draw",
    "power_readings/instant_power_draw",
)


def parse_xml(text: str) -> list[GpuReading]:
    """``nvidia-smi -q -x`` (DTD v11-v13) -> readings, ``[]`` if not that XML.

    ``index`` is the ``<gpu>`` element's position, which is nvidia-smi's own
    enumeration order (PCI bus order); ``minor_number`` (the /dev/nvidiaN
    number) can differ and is kept in ``extra``. Power is the average draw
    when the driver gives one (as ``power.draw`` does), else the instant one.
    """
    import xml.etree.ElementTree as ET  # lazy: only hosts that use the XML pay for it

    start = (text or "").find("<")  # a warning line (infoROM...) may precede the document
    if start < 0:
        return []
    try:
        root = ET.fromstring(text[start:])
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
        r.util_percent = _percent(g.findtext("utilization/gpu_util"))
        r.mem_busy_percent = _percent(g.findtext("utilization/memory_util"))
        r.temp_c = _number(g.findtext("temperature/gpu_temp"))
        for path in _XML_POWER:
            r.power_w = _nonneg(_number(g.findtext(path)))
            if r.power_w is not None:
                break
        extra = {"pci_bus_id": g.get("id", ""), "minor_number": _text(g.findtext("minor_number")),
                 "cuda_version": cuda, "processes": str(len(g.findall("processes/process_info")))}
        r.extra = {k: v for k, v in extra.items() if v}
        out.append(r)
    return out


# ------------------------------------------------------------------ screen

_GPU_CELL = re.compile(r"^\s*(\d+)\s+(.*?\S)\s+(On|Off|N/A|WDDM|TCC|MCDM|ERR!)\s*$")
_BUS_CELL = re.compile(r"^\s*[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\b")
_TEMP = re.compile(r"\b(\d+)C\b")
_POWER = re.compile(r"(\d+(?:\.\d+)?)W\s*/")
_MEM = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")
_UTIL = re.compile(r"^\s*(\d+)%")
#: "Driver Version:" up to 605; "KMD Version:" (kernel-mode driver) from 610.
_DRIVER = re.compile(r"(?:Driver|KMD) Version:\s*(\d[\w.-]*)")
#: "CUDA Version:" up to 605; "CUDA UMD Version:" (user-mode driver) from 610.
_CUDA = re.compile(r"CUDA (?:UMD )?Version:\s*(\d[\w.-]*)")


def _cells(line: str) -> list[str]:
    s = line.strip()
    return s.strip("|").split("|") if s.startswith("|") else []


def parse_screen(text: str) -> list[GpuReading]:
    """The plain ``nvidia-smi`` table -> readings (name, memory, util, temp, power).

    Handles the pre-2023 narrow layout and the newer wide one, Linux
    persistence modes and Windows driver models (WDDM, TCC, MCDM); a cell
    showing ``N/A`` or ``ERR!`` leaves that value ``None`` (an ``ERR!`` name
    becomes ``""``). Process and MIG tables are ignored. Driver and CUDA
    versions come from the banner line (``Driver``/``CUDA Version`` up to
    605, ``KMD``/``CUDA UMD Version`` from 610).
    """
    lines = (text or "").splitlines()
    banner = next((ln for ln in lines if "NVIDIA-SMI" in ln and "Version" in ln), "")
    m = _DRIVER.search(banner)
    driver = m.group(1) if m else ""
    m = _CUDA.search(banner)
    cuda = m.group(1) if m else ""
    out: list[GpuReading] = []
    for i, line in enumerate(lines):
        cells = _cells(line)
        if len(cells) < 3 or not _BUS_CELL.match(cells[1]):
            continue
        g = _GPU_CELL.match(cells[0])
        if not g:
            continue
        r = GpuReading(index=int(g.group(1)), name=_text(g.group(2)), driver_version=driver)
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
                r.util_percent = _percent(u.group(1))
        out.append(r)
    return out
