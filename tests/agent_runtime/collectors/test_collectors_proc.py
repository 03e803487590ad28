"""Pure /proc parsers against real captures of the development VM."""

from __future__ import annotations

import pytest

from agent_runtime.collectors.proc import (
    CpuTimes, DiskCounters, Mount, NetCounters, cpu_percent, is_whole_disk, parse_diskstats,
    parse_meminfo, parse_mounts, parse_net_dev, parse_stat, unescape_mount,
)
from agent_runtime.collectors.rates import RateTracker


# ------------------------------------------------------------------ stat

def test_parse_stat_real(proc_text):
    s = parse_stat(proc_text("stat.1"))
    assert set(s) == {"cpu", "cpu0", "cpu1"}
    # "cpu  4385 0 999 59155 249 0 63 33 0 0": idle + iowait, sum of the first 8
    assert s["cpu"] == CpuTimes(59155 + 249, 4385 + 999 + 59155 + 249 + 63 + 33)
    # "cpu0 2108 0 472 29638 177 0 31 13 0 0"
    assert s["cpu0"] == CpuTimes(29638 + 177, 2108 + 472 + 29638 + 177 + 31 + 13)


def test_cpu_percent_between_real_snapshots(proc_text):
    pct = cpu_percent(parse_stat(proc_text("stat.1")), parse_stat(proc_text("stat.2")))
    assert set(pct) == {"cpu", "cpu0", "cpu1"}
    # cpu0: total 32439 -> 32535 (+96), idle 29815 -> 29830 (+15): a busy-loop ran on it
    assert pct["cpu0"] == pytest.approx(100 * 81 / 96)
    # cpu1: total 32440 -> 32537 (+97), idle 29588 -> 29672 (+84)
    assert pct["cpu1"] == pytest.approx(100 * 13 / 97)
    assert pct["cpu"] == pytest.approx(100 * (191 - 99) / 191)


def test_cpu_percent_clamps_and_skips():
    prev = {"cpu": CpuTimes(100, 200), "cpu0": CpuTimes(50, 100), "cpu1": CpuTimes(10, 100)}
    cur = {"cpu": CpuTimes(90, 300),  # idle went back (iowait can): clamp to 100 % busy
           "cpu0": CpuTimes(50, 100),  # no time passed: skipped
           "cpu1": CpuTimes(10, 90),  # went back (hot-unplug): skipped
           "cpu2": CpuTimes(0, 10)}  # new CPU: skipped
    assert cpu_percent(prev, cur) == {"cpu": 100.0}


def test_parse_stat_ignores_garbage():
    assert parse_stat("") == {}
    assert parse_stat("cpu x y z\nintr 1 2\ncpu0 1 2\n") == {}


# ------------------------------------------------------------------ meminfo

def test_parse_meminfo_real(proc_text):
    m = parse_meminfo(proc_text("meminfo"))
    assert m is not None
    assert m.total_bytes == 24684092 * 1024
    assert m.available_bytes == 24354384 * 1024
    assert m.used_bytes == (24684092 - 24354384) * 1024


def test_parse_meminfo_old_kernel_without_memavailable():
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 50 kB\n"
    assert parse_meminfo(text) == (1000 * 1024, 600 * 1024, 400 * 1024)
    assert parse_meminfo("garbage") is None


def test_parse_meminfo_reads_only_its_keys_in_any_order():
    # Only the used lines are parsed, and parsing stops once MemTotal and MemAvailable are
    # seen: keys that merely start alike, or come in another order, change nothing.
    text = ("MemTotalHuge: 5 kB\nActive: 7 kB\nMemAvailable: 400 kB\nMemFree: 1 kB\n"
            "MemTotal: 1000 kB\nCached: 999999 kB\n")
    assert parse_meminfo(text) == (1000 * 1024, 600 * 1024, 400 * 1024)
    assert parse_meminfo("MemAvailable: 400 kB\nMemFree: 10 kB\n") is None  # no MemTotal


# ------------------------------------------------------------------ diskstats

def test_parse_diskstats_real_skips_loop_and_zram(proc_text):
    d = parse_diskstats(proc_text("diskstats.1"))
    # "254 0 vda 26969 5756 1597546 4229 4684 14470 790264 2720 ..."
    assert d == {"vda": DiskCounters(26969, 4684, 1597546 * 512, 790264 * 512)}


def test_diskstats_rates_between_real_snapshots(proc_text, proc_ts):
    t1, t2 = proc_ts(1), proc_ts(2)
    r = RateTracker()
    for name, c in parse_diskstats(proc_text("diskstats.1")).items():
        r.update(name + ".wb", c.write_bytes, t1)
        r.update(name + ".w", c.writes, t1)
    c2 = parse_diskstats(proc_text("diskstats.2"))["vda"]
    # a 16 MiB fsync'ed write ran between the snapshots: 790264 -> 823080 sectors
    assert r.update("vda.wb", c2.write_bytes, t2) == pytest.approx((823080 - 790264) * 512 / (t2 - t1))
    assert r.update("vda.w", c2.writes, t2) == pytest.approx((4695 - 4684) / (t2 - t1))


def test_parse_diskstats_8gpu_node_whole_disks_only(proc_text):
    text = proc_text("diskstats-8xgpu-node")
    d = parse_diskstats(text)
    assert set(d) == {f"nvme{i}n1" for i in range(10)} | {"md0", "md1"}
    assert d["nvme2n1"] == DiskCounters(412345678, 23456789, 210432891234 * 512, 9812345678 * 512)
    # the same answer when /sys/block says which are whole disks (it lists loops too)
    sys_block = {f"nvme{i}n1" for i in range(10)} | {"md0", "md1", "loop0", "loop1", "loop2"}
    assert parse_diskstats(text, whole_disks=sys_block) == d


def test_parse_diskstats_old_formats():
    text = ("   8    0 sda 10 0 80 0 20 0 160 0 0 0 0\n"  # 14 fields (kernel < 4.18)
            "   8    1 sda1 5 40 7 56\n")  # 7-field partition line (kernel < 2.6.25)
    assert parse_diskstats(text) == {"sda": DiskCounters(10, 20, 80 * 512, 160 * 512)}


@pytest.mark.parametrize("name,whole", [
    ("sda", True), ("sda1", False), ("sdab3", False), ("vda", True), ("vda2", False),
    ("xvda", True), ("xvda1", False), ("nvme0n1", True), ("nvme0n1p1", False),
    ("nvme12n3p15", False), ("mmcblk0", True), ("mmcblk0p2", False), ("md127", True),
    ("md0p1", False), ("dm-0", True), ("loop0", False), ("loop0p1", False), ("ram0", False),
    ("zram0", False), ("sr0", False), ("nbd0", True),
])
def test_is_whole_disk(name, whole):
    assert is_whole_disk(name) is whole


# ------------------------------------------------------------------ net/dev

def test_parse_net_dev_real_skips_lo(proc_text):
    n = parse_net_dev(proc_text("net_dev.1"))
    assert set(n) == {"eth0", "ifb0", "ifb1"}
    assert n["eth0"] == NetCounters(54242805, 188405)


def test_net_rates_between_real_snapshots(proc_text, proc_ts):
    t1, t2 = proc_ts(1), proc_ts(2)
    a, b = parse_net_dev(proc_text("net_dev.1")), parse_net_dev(proc_text("net_dev.2"))
    r = RateTracker()
    r.update("rx", a["eth0"].recv_bytes, t1)
    r.update("tx", a["eth0"].sent_bytes, t1)
    assert r.update("rx", b["eth0"].recv_bytes, t2) == pytest.approx((54685920 - 54242805) / (t2 - t1))
    assert r.update("tx", b["eth0"].sent_bytes, t2) == pytest.approx((191948 - 188405) / (t2 - t1))


def test_parse_net_dev_without_space_after_colon():
    text = "Inter-|\n face |\neth0:1 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n"
    assert parse_net_dev(text) == {"eth0": NetCounters(1, 3)}


# ------------------------------------------------------------------ mounts

def test_parse_mounts_real_vm(proc_text):
    # the VM has proc, sysfs, devtmpfs, tmpfs, devpts, cgroup, cgroup2 and one ext4
    assert parse_mounts(proc_text("mounts")) == [Mount("/dev/vda", "/", "ext4")]


DOCKER_HOST_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=1012345k,nr_inodes=253086,mode=755 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=203456k,mode=755 0 0
/dev/nvme0n1p2 / ext4 rw,relatime 0 0
securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
/dev/loop0 /snap/core20/2318 squashfs ro,nodev,relatime,errors=continue 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077 0 0
/dev/md1 /raid ext4 rw,relatime,stripe=256 0 0
/dev/md1 /var/lib/kubelet/pods/3f2a/volumes/kubernetes.io~local-volume/data ext4 rw,relatime 0 0
/dev/md1 /srv/mirror ext4 rw,relatime 0 0
nas01:/export/home /home nfs4 rw,relatime,vers=4.2,hard,proto=tcp 0 0
/dev/sdb1 /mnt/usb\\040disk exfat rw,relatime 0 0
overlay /var/lib/docker/overlay2/4b1c/merged overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/ABC 0 0
shm /var/lib/docker/containers/4b1c/mounts/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k 0 0
nsfs /run/docker/netns/1a2b nsfs rw 0 0
/dev/nvme1n1 /var/lib/docker xfs rw,relatime 0 0
/dev/sdc1 /data ext4 rw,relatime 0 0
/dev/sdd1 /data xfs rw,relatime 0 0
lxcfs /var/lib/lxcfs fuse.lxcfs rw,nosuid,nodev,relatime 0 0
"""


def test_parse_mounts_docker_host():
    got = parse_mounts(DOCKER_HOST_MOUNTS)
    assert [m.mountpoint for m in got] == ["/", "/boot/efi", "/raid", "/mnt/usb disk", "/var/lib/docker", "/data"]
    assert got[-1] == Mount("/dev/sdd1", "/data", "xfs")  # the topmost of two mounts on /data
    with_net = parse_mounts(DOCKER_HOST_MOUNTS, include_network=True)
    assert Mount("nas01:/export/home", "/home", "nfs4") in with_net


def test_unescape_mount():
    assert unescape_mount(r"/mnt/a\040b\011c\134d") == "/mnt/a b\tc\\d"
    assert unescape_mount("/plain") == "/plain"
