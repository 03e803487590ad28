"""Pure parser of ``nvidia-smi --query-compute-apps=... --format=csv[,noheader][,nounits]``.

The agent's fallback when NVML is not there (see ``gpu_procs.py``). Like the
GPU parsers in ``nvidia.py`` it never raises: a value it cannot read
(``[N/A]``, ``[Insufficient Permissions]``, ``[Not available in WDDM driver
model]``) is ``None``/``""``, a row it cannot read is skipped, a table of
another query gives ``[]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nvidia import _ALIASES, _bytes, _number, _text, split_csv_header

#: The columns the agent asks for.
APPS_FIELDS: tuple[str, ...] = ("gpu_uuid", "pid", "process_name", "used_memory")
APPS_ARGV: tuple[str, ...] = (
    "nvidia-smi", "--query-compute-apps=" + ",".join(APPS_FIELDS), "--format=csv,noheader,nounits",
)
#: nvidia-smi prints ``used_memory`` as ``used_gpu_memory`` in headers.
_APP_ALIASES = {"used_gpu_memory": "used_memory", "name": "process_name"}


@dataclass(slots=True)
class AppRow:
    """One compute process as nvidia-smi lists it. ``gpu_uuid``/``gpu_bus_id`` place it."""

    pid: int
    process_name: str = ""
    used_memory_bytes: float | None = None
    gpu_uuid: str = ""
    gpu_bus_id: str = ""


def parse_compute_apps(text: str, fields: tuple[str, ...] | list[str] | None = None) -> list[AppRow]:
    """Rows of a ``--query-compute-apps`` output (header, when present, names the columns).

    A process name holding commas (a path) spans several cells: they are
    joined back when the row is longer than the header by exactly that.
    "No running processes found" and a header alone give ``[]``.
    """
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines or "no running processes found" in lines[0].lower():
        return []
    header = split_csv_header([c.strip() for c in lines[0].split(",")])
    if header is not None:
        names, units = header
        body = lines[1:]
    else:
        names, units, body = list(fields or APPS_FIELDS), [""] * len(fields or APPS_FIELDS), lines
    names = [_APP_ALIASES.get(_ALIASES.get(n, n), _ALIASES.get(n, n)) for n in names]
    if "pid" not in names:
        return []
    unit = dict(zip(names, units))
    out: list[AppRow] = []
    for line in body:
        cells = [c.strip() for c in line.split(",")]
        extra = len(cells) - len(names)
        if extra > 0 and "process_name" in names:
            i = names.index("process_name")
            cells[i:i + extra + 1] = [",".join(cells[i:i + extra + 1])]
        if len(cells) != len(names):
            continue
        raw = dict(zip(names, cells))
        pid = _number(raw.get("pid"))
        if pid is None or pid < 0 or pid != int(pid) or pid > 1 << 32:
            continue
        out.append(AppRow(
            pid=int(pid), process_name=_text(raw.get("process_name")),
            used_memory_bytes=_bytes(raw.get("used_memory"), unit.get("used_memory") or "MiB"),
            gpu_uuid=_text(raw.get("uuid")), gpu_bus_id=_text(raw.get("pci.bus_id")),
        ))
    return out

