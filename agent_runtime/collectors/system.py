"""CPU, memory, filesystem, disk and network samples of this machine.

On Linux ``read()`` gathers raw ``/proc`` text (plus ``statvfs`` of each real
filesystem) and ``compute()`` turns it into sample keys with the pure parsers
of ``proc.py`` and a ``RateTracker``. Elsewhere psutil is used.

Keys and units::

    cpu.percent, cpu[N].percent                      busy %, 0-100
    mem.used_bytes, mem.total_bytes, mem.percent     used = total - available
    fs[/mount].used_bytes, .total_bytes, .percent    percent as df: used / (used + avail)
    disk[dev].read_iops, .write_iops                 operations/s
    disk[dev].read_bytes_per_s, .write_bytes_per_s   bytes/s
    net[if].recv_bytes_per_s, .sent_bytes_per_s      bytes/s

First sample: CPU percent and rates need two snapshots, so the first call
returns only mem and fs keys (no priming at construction: a snapshot taken
just before the first sample would give a meaningless, too-short interval).
A counter reset gives no rate for that interval (see ``rates.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from .proc import (
    NETWORK_FS, PSEUDO_FS, CpuTimes, Mount, cpu_percent, is_whole_disk, parse_diskstats,
    parse_meminfo, parse_mounts, parse_net_dev, parse_stat,
)
from .rates import RateTracker

#: Longest stream key the wire protocol accepts; longer fs keys are skipped.
MAX_KEY = 128


class FsUsage(NamedTuple):
    """Filesystem size in bytes: total, used (total - free), available to non-root."""

    total_bytes: int
    used_bytes: int
    avail_bytes: int


def statvfs_usage(path: str) -> FsUsage:
    """``os.statvfs`` in bytes. Raises OSError like ``os.statvfs``."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    return FsUsage(total, total - st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize)


@dataclass
class RawSystem:
    """Raw inputs of one sample; a ``None`` text could not be read."""

    stat: str | None = None
    meminfo: str | None = None
    diskstats: str | None = None
    net_dev: str | None = None
    #: Names in /sys/block (whole disks), if listable.
    whole_disks: set[str] | None = None
    #: Mount point -> usage, for the filesystems ``parse_mounts`` keeps.
    fs: dict[str, FsUsage] = field(default_factory=dict)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def fs_keys(out: dict[str, float], mount: str, u: FsUsage) -> None:
    """Add the three ``fs[mount].*`` keys to ``out`` (none if too long or empty fs)."""
    p = f"fs[{mount}]."
    if u.total_bytes <= 0 or len(p) + len("total_bytes") > MAX_KEY:
        return
    out[p + "used_bytes"] = float(u.used_bytes)
    out[p + "total_bytes"] = float(u.total_bytes)
    denom = u.used_bytes + u.avail_bytes
    out[p + "percent"] = 100.0 * u.used_bytes / denom if denom > 0 else 0.0


class SystemCollector:
    """Samples cpu/mem/fs/disk/net; ``now`` is seconds on any steady clock."""

    def __init__(
        self, *, proc_root: str = "/proc", sys_block: str = "/sys/block",
        statvfs: Callable[[str], FsUsage] = statvfs_usage, include_network_fs: bool = False,
        use_proc: bool | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.sys_block = sys_block
        self.statvfs = statvfs
        self.include_network_fs = include_network_fs
        self.use_proc = sys.platform.startswith("linux") if use_proc is None else use_proc
        self.rates = RateTracker()
        self._prev_stat: dict[str, CpuTimes] | None = None
        self._mounts_text: str | None = None
        self._mounts: list[Mount] = []
        self._psutil_primed = False
        #: The last exception ``sample`` swallowed, for the agent's log.
        self.last_error: str | None = None

    # ------------------------------------------------------------ Linux

    def mounts(self) -> list[Mount]:
        """Real filesystems from ``/proc/mounts`` (re-parsed only when it changes)."""
        text = _read(os.path.join(self.proc_root, "mounts"))
        if text is not None and text != self._mounts_text:
            self._mounts_text = text
            self._mounts = parse_mounts(text, self.include_network_fs)
        return self._mounts

    def read(self) -> RawSystem:
        """Read the raw inputs. Unreadable files become ``None``; never raises OSError."""
        r = os.path.join
        raw = RawSystem(
            stat=_read(r(self.proc_root, "stat")),
            meminfo=_read(r(self.proc_root, "meminfo")),
            diskstats=_read(r(self.proc_root, "diskstats")),
            net_dev=_read(r(self.proc_root, "net", "dev")),
        )
        try:
            raw.whole_disks = set(os.listdir(self.sys_block))
        except OSError:
            pass
        for m in self.mounts():
            try:
                raw.fs[m.mountpoint] = self.statvfs(m.mountpoint)
            except OSError:
                continue
        return raw

    def compute(self, raw: RawSystem, now: float) -> dict[str, float]:
        """Sample keys from ``raw`` read at ``now`` (s). Deterministic given the history."""
        out: dict[str, float] = {}
        if raw.stat is not None:
            cur = parse_stat(raw.stat)
            if self._prev_stat is not None:
                for name, pct in cpu_percent(self._prev_stat, cur).items():
                    out["cpu.percent" if name == "cpu" else f"cpu[{name[3:]}].percent"] = pct
            self._prev_stat = cur
        mem = parse_meminfo(raw.meminfo) if raw.meminfo is not None else None
        if mem is not None:
            out["mem.used_bytes"] = float(mem.used_bytes)
            out["mem.total_bytes"] = float(mem.total_bytes)
            out["mem.percent"] = 100.0 * mem.used_bytes / mem.total_bytes
        for mount, usage in raw.fs.items():
            fs_keys(out, mount, usage)
        counters: dict[str, float] = {}
        if raw.diskstats is not None:
            for dev, d in parse_diskstats(raw.diskstats, raw.whole_disks).items():
                p = f"disk[{dev}]."
                counters[p + "read_iops"] = d.reads
                counters[p + "write_iops"] = d.writes
                counters[p + "read_bytes_per_s"] = d.read_bytes
                counters[p + "write_bytes_per_s"] = d.write_bytes
        if raw.net_dev is not None:
            for nic, n in parse_net_dev(raw.net_dev).items():
                counters[f"net[{nic}].recv_bytes_per_s"] = n.recv_bytes
                counters[f"net[{nic}].sent_bytes_per_s"] = n.sent_bytes
        self._rates_into(out, counters, now)
        return out

    def _rates_into(self, out: dict[str, float], counters: dict[str, float], now: float) -> None:
        update = self.rates.update
        for key, value in counters.items():
            rate = update(key, value, now)
            if rate is not None:
                out[key] = rate
        if len(self.rates) > len(counters):
            self.rates.retain(counters)  # forget devices that went away

    def sample(self, now: float) -> dict[str, float]:
        """One sample of this machine at ``now`` (s). Never raises."""
        try:
            if self.use_proc:
                return self.compute(self.read(), now)
            return self._sample_psutil(now)
        except Exception as e:  # a collector must not kill the agent; a missing sample is visible
            self.last_error = repr(e)
            return {}

    # ------------------------------------------------------------ elsewhere: psutil

    def _sample_psutil(self, now: float) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        per_cpu = psutil.cpu_percent(percpu=True)  # since the previous call; first is meaningless
        if self._psutil_primed and per_cpu:
            out["cpu.percent"] = sum(per_cpu) / len(per_cpu)
            for i, pct in enumerate(per_cpu):
                out[f"cpu[{i}].percent"] = float(pct)
        self._psutil_primed = True
        vm = psutil.virtual_memory()
        out["mem.used_bytes"] = float(vm.total - vm.available)
        out["mem.total_bytes"] = float(vm.total)
        out["mem.percent"] = 100.0 * (vm.total - vm.available) / vm.total if vm.total else 0.0
        for part in psutil.disk_partitions(all=False):
            fstype = part.fstype
            if fstype in PSEUDO_FS or (fstype in NETWORK_FS and not self.include_network_fs):
                continue
            try:
                du = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            fs_keys(out, part.mountpoint, FsUsage(du.total, du.used, du.free))
        counters: dict[str, float] = {}
        for dev, d in (psutil.disk_io_counters(perdisk=True) or {}).items():
            if sys.platform.startswith("linux") and not is_whole_disk(dev):
                continue
            p = f"disk[{dev}]."
            counters[p + "read_iops"] = d.read_count
            counters[p + "write_iops"] = d.write_count
            counters[p + "read_bytes_per_s"] = d.read_bytes
            counters[p + "write_bytes_per_s"] = d.write_bytes
        for nic, n in (psutil.net_io_counters(pernic=True) or {}).items():
            if nic in ("lo", "lo0"):
                continue
            counters[f"net[{nic}].recv_bytes_per_s"] = n.bytes_recv
            counters[f"net[{nic}].sent_bytes_per_s"] = n.bytes_sent
        self._rates_into(out, counters, now)
        return out
