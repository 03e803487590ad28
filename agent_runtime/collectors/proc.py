"""Pure parsers of Linux ``/proc`` text. No I/O here: callers pass the text.

Units: jiffies (``/proc/stat``, cumulative), bytes (converted from kB and
512-byte sectors), operations (cumulative counts). Rates are computed
elsewhere (``rates.RateTracker``). Every parser ignores lines it cannot read
rather than raising.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: /proc/diskstats always counts in 512-byte sectors, whatever the device's block size.
SECTOR_BYTES = 512


# ----------------------------------------------------------------- /proc/stat


class CpuTimes(NamedTuple):
    """Cumulative jiffies of one CPU line: time idle (idle + iowait) and in total."""

    idle: int
    total: int


def parse_stat(text: str) -> dict[str, CpuTimes]:
    """``/proc/stat`` -> ``{"cpu": all cores, "cpu0": ..., "cpu1": ...}`` in jiffies.

    Total is user+nice+system+idle+iowait+irq+softirq+steal; guest and
    guest_nice are left out because the kernel already counts them in user/nice.
    """
    out: dict[str, CpuTimes] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        try:
            vals = [int(v) for v in parts[1:9]]
        except ValueError:
            continue
        if len(vals) < 4:
            continue
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        out[parts[0]] = CpuTimes(idle, sum(vals))
    return out


def cpu_percent(prev: dict[str, CpuTimes], cur: dict[str, CpuTimes]) -> dict[str, float]:
    """Busy percent (0-100) per CPU line between two ``parse_stat`` snapshots.

    A CPU absent from either snapshot, or whose total did not advance (or went
    back, e.g. after hot-unplug), is left out. Busy time is clamped to the
    interval because iowait is known to decrease occasionally.
    """
    out: dict[str, float] = {}
    for name, c in cur.items():
        p = prev.get(name)
        if p is None:
            continue
        dtotal = c.total - p.total
        if dtotal <= 0:
            continue
        busy = dtotal - (c.idle - p.idle)
        busy = 0 if busy < 0 else (dtotal if busy > dtotal else busy)
        out[name] = 100.0 * busy / dtotal
    return out


# -------------------------------------------------------------- /proc/meminfo


class MemInfo(NamedTuple):
    """Memory in bytes. ``used = total - available``."""

    total_bytes: int
    used_bytes: int
    available_bytes: int


_MEMINFO_KEYS = frozenset({"MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SReclaimable"})


def parse_meminfo(text: str) -> MemInfo | None:
    """``/proc/meminfo`` -> bytes; ``None`` if MemTotal is missing.

    Available is MemAvailable; on kernels older than 3.14 (no MemAvailable) it
    is estimated as MemFree + Buffers + Cached + SReclaimable.
    """
    kb: dict[str, int] = {}
    for line in text.splitlines():  # ~55 lines: read only the few used (each sample parses it)
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep or key not in _MEMINFO_KEYS:
            continue
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[key] = int(parts[0])
            if "MemTotal" in kb and "MemAvailable" in kb:
                break  # lines 1 and 3 on every kernel since 3.14
    total = kb.get("MemTotal")
    if not total:
        return None
    avail = kb.get("MemAvailable")
    if avail is None:
        avail = sum(kb.get(k, 0) for k in ("MemFree", "Buffers", "Cached", "SReclaimable"))
    avail = min(avail, total)
    return MemInfo(total * 1024, (total - avail) * 1024, avail * 1024)


# ------------------------------------------------------------- /proc/diskstats


class DiskCounters(NamedTuple):
    """Cumulative I/O of one block device: completed operations and bytes."""

    reads: int
    writes: int
    read_bytes: int
    write_bytes: int


#: Block devices that are not disks: loop files, RAM disks, optical and floppy drives.
_NOT_DISK = re.compile(r"^(?:loop|ram|zram|sr|fd)\d*$")
#: Partition names: sda1, vdb2, xvda1, hda3 / nvme0n1p1, mmcblk0p2, md0p1, nbd0p1 ...
_PARTITION = re.compile(r"^(?:(?:sd|vd|xvd|hd)[a-z]+\d+|[a-z]+\d+(?:c\d+)?n?\d*p\d+)$")


def is_whole_disk(name: str) -> bool:
    """Heuristic on the name alone: a whole disk, not a partition/loop/ram device."""
    return not _NOT_DISK.match(name) and not _PARTITION.match(name)


def parse_diskstats(text: str, whole_disks: set[str] | None = None) -> dict[str, DiskCounters]:
    """``/proc/diskstats`` -> cumulative counters of whole disks only.

    ``whole_disks`` (names listed in ``/sys/block``) is authoritative when
    given; loop/ram/zram/sr/fd devices are dropped in any case. Without it the
    name heuristic ``is_whole_disk`` decides. Handles the 14-, 18- and 20-field
    formats (and the 7-field partition lines of very old kernels).
    """
    out: dict[str, DiskCounters] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 7:
            continue
        name = f[2]
        if _NOT_DISK.match(name):
            continue
        if whole_disks is not None:
            if name not in whole_disks:
                continue
        elif _PARTITION.match(name):
            continue
        try:
            if len(f) >= 14:
                c = DiskCounters(int(f[3]), int(f[7]), int(f[5]) * SECTOR_BYTES, int(f[9]) * SECTOR_BYTES)
            else:
                c = DiskCounters(int(f[3]), int(f[5]), int(f[4]) * SECTOR_BYTES, int(f[6]) * SECTOR_BYTES)
        except ValueError:
            continue
        out[name] = c
    return out


# -------------------------------------------------------------- /proc/net/dev


class NetCounters(NamedTuple):
    """Cumulative bytes received and sent by one interface."""

    recv_bytes: int
    sent_bytes: int


def parse_net_dev(text: str, skip: frozenset[str] = frozenset({"lo"})) -> dict[str, NetCounters]:
    """``/proc/net/dev`` -> cumulative byte counters per interface, minus ``skip``."""
    out: dict[str, NetCounters] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        if not name or name in skip or "|" in name:
            continue
        f = rest.split()
        if len(f) < 9:
            continue
        try:
            out[name] = NetCounters(int(f[0]), int(f[8]))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------- /proc/mounts


class Mount(NamedTuple):
    """One mounted filesystem worth reporting."""

    device: str
    mountpoint: str
    fstype: str


#: Filesystems that hold no user data (or only RAM), never reported.
PSEUDO_FS = frozenset({
    "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "ramfs", "rootfs", "securityfs",
    "pstore", "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs",
    "bpf", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "squashfs", "efivarfs",
    "selinuxfs", "cgroup", "cgroup2", "nfsd", "fuse.lxcfs", "fuse.gvfsd-fuse",
    "fuse.portal", "fuse.snapfuse", "iso9660", "udf", "sockfs", "pipefs",
    "anon_inodefs", "zonefs",
})
#: Filesystems whose ``statvfs`` can block on a dead server: skipped by default.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "9p", "afs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.juicefs",
    "fuse.glusterfs", "fuse.cephfs", "fuse.gcsfuse", "fuse.goofys",
})
#: Directories under which container runtimes mount image layers (overlay/aufs),
#: per-container shm and pod volumes. The directory itself (a dedicated disk for
#: /var/lib/docker, say) is still reported.
_CONTAINER_DIRS = (
    "/var/lib/docker/", "/var/lib/containerd/", "/run/containerd/", "/var/lib/containers/",
    "/run/docker/", "/var/lib/kubelet/pods/", "/run/k3s/", "/var/lib/rancher/",
)
_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_mount(field: str) -> str:
    """Undo /proc/mounts octal escapes: ``\\040`` space, ``\\011`` tab, ``\\134`` backslash."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mounts(text: str, include_network: bool = False) -> list[Mount]:
    """``/proc/mounts`` -> real filesystems, in mount order.

    Drops pseudo filesystems (``PSEUDO_FS``, cgroup*, ``fuse.*`` helpers),
    whatever is mounted under container-runtime dirs (docker/containerd
    overlay layers, per-container shm, kubelet pod volumes), and
    unless ``include_network`` network filesystems (``NETWORK_FS`` and other
    ``fuse.*``). A mount point mounted twice keeps the topmost (last) entry;
    a block device mounted at several points (bind mounts, btrfs subvolumes)
    is reported once, at its first mount point.
    """
    by_point: dict[str, Mount] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        device, point, fstype = unescape_mount(f[0]), unescape_mount(f[1]), f[2]
        if fstype in PSEUDO_FS or fstype.startswith("cgroup"):
            continue
        if point.startswith(("/proc/", "/sys/")) or point in ("/proc", "/sys"):
            continue
        if point.startswith(_CONTAINER_DIRS):
            continue  # image layers, per-container shm, volumes bound into pods
        is_net = fstype in NETWORK_FS or (fstype.startswith("fuse.") or ":/" in device)
        if is_net and not include_network:
            continue
        by_point.pop(point, None)  # re-insert so order follows the topmost mount
        by_point[point] = Mount(device, point, fstype)
    out: list[Mount] = []
    seen_devices: set[str] = set()
    for m in by_point.values():
        if m.device.startswith("/"):
            if m.device in seen_devices:
                continue
            seen_devices.add(m.device)
        out.append(m)
    return out
