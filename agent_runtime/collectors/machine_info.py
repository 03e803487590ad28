"""What this machine is: the ``info`` an agent sends in its ``hello``.

``collect_machine_info()`` returns a plain dict shaped like
``centrality_core.protocol.MachineInfo`` (sizes in bytes; strings cut to 256
characters). The parsers ``parse_cpuinfo`` and ``parse_os_release`` are pure.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
from collections.abc import Callable
from typing import NamedTuple

from .proc import NETWORK_FS, PSEUDO_FS, parse_meminfo, parse_mounts
from .system import FsUsage, statvfs_usage

MAX_SHORT = 256
#: Backslash escapes allowed inside double quotes in os-release (shell rules).
_DQ_ESCAPE = re.compile(r'\\([\\"$`])')


class CpuInfo(NamedTuple):
    """CPU model name and number of logical processors listed."""

    model: str
    count: int


def parse_cpuinfo(text: str) -> CpuInfo:
    """``/proc/cpuinfo`` -> model (first ``model name``; ``Hardware``/``Processor``
    on ARM kernels without it) and the number of ``processor`` entries."""
    fields: dict[str, str] = {}
    count = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            count += 1
        fields.setdefault(key, value.strip())
    model = fields.get("model name") or fields.get("Hardware") or fields.get("Processor") or ""
    return CpuInfo(" ".join(model.split()), count)


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` -> ``{KEY: value}`` with shell quoting removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _DQ_ESCAPE.sub(r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def os_name(os_release: dict[str, str]) -> str:
    """PRETTY_NAME, else "NAME VERSION", else ``""``."""
    return os_release.get("PRETTY_NAME") or " ".join(
        v for v in (os_release.get("NAME"), os_release.get("VERSION")) if v
    )


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _short(v: object) -> str:
    return str(v or "").strip()[:MAX_SHORT]


def _disks(proc_root: str, statvfs: Callable[[str], FsUsage]) -> list[dict]:
    disks: list[dict] = []
    text = _read(os.path.join(proc_root, "mounts"))
    if text is not None:
        for m in parse_mounts(text):
            try:
                total = statvfs(m.mountpoint).total_bytes
            except OSError:
                continue
            if total > 0:
                disks.append({"mount": m.mountpoint, "device": m.device, "fstype": m.fstype, "total_bytes": total})
        return disks
    try:
        import psutil

        for p in psutil.disk_partitions(all=False):
            if p.fstype in PSEUDO_FS or p.fstype in NETWORK_FS:
                continue
            disks.append({"mount": p.mountpoint, "device": p.device, "fstype": p.fstype,
                          "total_bytes": psutil.disk_usage(p.mountpoint).total})
    except Exception:
        pass
    return disks


def _memory_total(proc_root: str) -> int:
    text = _read(os.path.join(proc_root, "meminfo"))
    mem = parse_meminfo(text) if text is not None else None
    if mem is not None:
        return mem.total_bytes
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return 0


def collect_machine_info(
    *, gpus: list[dict] | None = None, gpu_driver: str | None = None,
    proc_root: str = "/proc", etc_root: str = "/etc",
    statvfs: Callable[[str], FsUsage] = statvfs_usage,
) -> dict:
    """Describe this machine. Never raises for a missing file or absent GPU.

    ``gpus``/``gpu_driver``: pass what a running ``GpuCollector.inventory()``
    already knows; when ``gpus`` is None a temporary ``GpuCollector`` is asked.
    Keys: hostname, machine_id, os, kernel, arch, cpu_model, cpu_count,
    memory_total_bytes, disks [{mount, device, fstype, total_bytes}],
    gpus [{index, name, uuid, memory_total_bytes}], gpu_driver.
    """
    machine_id = _read(os.path.join(etc_root, "machine-id")) or _read("/var/lib/dbus/machine-id") or ""
    osr_text = _read(os.path.join(etc_root, "os-release")) or _read("/usr/lib/os-release")
    os_str = os_name(parse_os_release(osr_text)) if osr_text else ""
    if not os_str:
        os_str = platform.platform(terse=True) if sys.platform != "darwin" else "macOS " + platform.mac_ver()[0]
    cpuinfo_text = _read(os.path.join(proc_root, "cpuinfo"))
    cpu = parse_cpuinfo(cpuinfo_text) if cpuinfo_text else CpuInfo("", 0)
    if gpus is None:
        from .gpu import GpuCollector

        collector = GpuCollector()
        try:
            gpus, driver = collector.inventory()
        finally:
            collector.close()
        gpu_driver = driver if gpu_driver is None else gpu_driver
    return {
        "hostname": _short(socket.gethostname()),
        "machine_id": _short(machine_id),
        "os": _short(os_str),
        "kernel": _short(platform.release()),
        "arch": _short(platform.machine()),
        "cpu_model": _short(cpu.model or platform.processor()),
        "cpu_count": os.cpu_count() or cpu.count,
        "memory_total_bytes": _memory_total(proc_root),
        "disks": [{k: (_short(v) if isinstance(v, str) else v) for k, v in d.items()}
                  for d in _disks(proc_root, statvfs)[:256]],
        "gpus": [{**g, "name": _short(g.get("name")), "uuid": _short(g.get("uuid"))} for g in gpus[:64]],
        "gpu_driver": _short(gpu_driver),
    }
