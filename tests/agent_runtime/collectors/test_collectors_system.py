"""SystemCollector: raw /proc captures to sample keys; the live machine; psutil."""

from __future__ import annotations

import shutil

import pytest

from agent_runtime.collectors.system import FsUsage, RawSystem, SystemCollector

ROOT_FS = FsUsage(total_bytes=1000 * 4096, used_bytes=250 * 4096, avail_bytes=700 * 4096)


def _raw(proc_text, n: int) -> RawSystem:
    return RawSystem(
        stat=proc_text(f"stat.{n}"), meminfo=proc_text("meminfo"), diskstats=proc_text(f"diskstats.{n}"),
        net_dev=proc_text(f"net_dev.{n}"), fs={"/": ROOT_FS},
    )


def test_compute_from_real_snapshots(proc_text, proc_ts):
    c = SystemCollector(statvfs=lambda p: ROOT_FS)
    t1, t2 = proc_ts(1), proc_ts(2)
    first = c.compute(_raw(proc_text, 1), t1)
    # first sample: no cpu percent, no rates (documented); mem and fs are there
    assert set(first) == {"mem.used_bytes", "mem.total_bytes", "mem.percent",
                          "fs[/].used_bytes", "fs[/].total_bytes", "fs[/].percent"}
    assert first["mem.total_bytes"] == 24684092 * 1024
    assert first["fs[/].percent"] == pytest.approx(100 * 250 / 950)  # df: used / (used + avail)
    s = c.compute(_raw(proc_text, 2), t2)
    dt = t2 - t1
    assert s["cpu.percent"] == pytest.approx(100 * 92 / 191)
    assert s["cpu[0].percent"] == pytest.approx(100 * 81 / 96)
    assert s["cpu[1].percent"] == pytest.approx(100 * 13 / 97)
    assert s["disk[vda].write_iops"] == pytest.approx(11 / dt)
    assert s["disk[vda].write_bytes_per_s"] == pytest.approx(32816 * 512 / dt)
    assert s["disk[vda].read_iops"] == 0.0
    assert s["net[eth0].recv_bytes_per_s"] == pytest.approx(443115 / dt)
    assert s["net[eth0].sent_bytes_per_s"] == pytest.approx(3543 / dt)
    assert s["net[ifb0].recv_bytes_per_s"] == 0.0
    assert not [k for k in s if "loop" in k or "zram" in k or "[lo]" in k]


def test_counters_going_back_give_no_rate_not_negative(proc_text, proc_ts):
    c = SystemCollector()
    c.compute(_raw(proc_text, 2), 100.0)
    s = c.compute(_raw(proc_text, 1), 101.0)  # counters went back (as after a reset)
    went_back = {"disk[vda].write_iops", "disk[vda].write_bytes_per_s",
                 "net[eth0].recv_bytes_per_s", "net[eth0].sent_bytes_per_s"}
    assert not went_back & set(s)
    assert s["disk[vda].read_iops"] == 0.0  # unchanged counters still give 0
    assert "cpu.percent" not in s
    assert all(v >= 0 for v in s.values())
    s = c.compute(_raw(proc_text, 2), 102.0)  # and rates resume from the new baseline
    assert s["net[eth0].recv_bytes_per_s"] == pytest.approx(443115)


def test_read_from_a_proc_tree(tmp_path, proc_text, proc_dir):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    for src, dst in (("stat.1", "stat"), ("meminfo", "meminfo"), ("diskstats-8xgpu-node", "diskstats"),
                     ("net_dev.1", "net/dev"), ("mounts", "mounts")):
        shutil.copy(proc_dir / src, proc / dst)
    seen = []

    def statvfs(path):
        seen.append(path)
        return ROOT_FS

    c = SystemCollector(proc_root=str(proc), sys_block=str(tmp_path / "absent"), statvfs=statvfs)
    raw = c.read()
    assert raw.whole_disks is None and seen == ["/"]
    c.sample(0.0)
    (proc / "stat").write_text(proc_text("stat.2"))
    s = c.sample(1.0)
    assert s["cpu[0].percent"] == pytest.approx(100 * 81 / 96)
    assert {k.split("]")[0] + "]" for k in s if k.startswith("disk[")} == {
        f"disk[{d}]" for d in [f"nvme{i}n1" for i in range(10)] + ["md0", "md1"]}
    assert s["disk[nvme2n1].read_iops"] == 0.0  # same diskstats twice


def test_missing_proc_files_do_not_raise(tmp_path):
    c = SystemCollector(proc_root=str(tmp_path), sys_block=str(tmp_path))
    assert c.sample(0.0) == {} and c.sample(1.0) == {}


def test_long_mount_points_are_skipped():
    c = SystemCollector()
    raw = RawSystem(fs={"/" + "x" * 200: ROOT_FS, "/ok": ROOT_FS, "/empty": FsUsage(0, 0, 0)})
    assert set(c.compute(raw, 0.0)) == {"fs[/ok].used_bytes", "fs[/ok].total_bytes", "fs[/ok].percent"}


def _check(sample: dict[str, float]) -> None:
    for k, v in sample.items():
        assert v >= 0, k
        assert len(k) <= 128, k
        if k.endswith("percent"):
            assert 0 <= v <= 100, (k, v)


@pytest.mark.parametrize("use_proc", [True, False], ids=["proc", "psutil"])
def test_live_machine(use_proc):
    import time

    c = SystemCollector(use_proc=use_proc)
    first = c.sample(time.monotonic())
    assert {"mem.used_bytes", "mem.total_bytes", "mem.percent"} <= set(first)
    assert not [k for k in first if k.startswith("cpu")]
    time.sleep(0.2)
    s = c.sample(time.monotonic())
    assert "cpu.percent" in s and "cpu[0].percent" in s
    assert [k for k in s if k.startswith("fs[")]
    assert [k for k in s if k.endswith("recv_bytes_per_s")]
    _check(first)
    _check(s)
    assert c.last_error is None
