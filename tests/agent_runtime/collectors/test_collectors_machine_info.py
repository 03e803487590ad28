"""Machine info: pure parsers and the collected dict (shaped like protocol.MachineInfo)."""

from __future__ import annotations

import shutil

import msgspec

from agent_runtime.collectors.machine_info import collect_machine_info, parse_cpuinfo, parse_os_release
from agent_runtime.collectors.system import FsUsage
from centrality_core.protocol import MachineInfo


def test_parse_cpuinfo_real(proc_text):
    assert parse_cpuinfo(proc_text("cpuinfo")) == ("Intel(R) Xeon(R) Processor", 2)


def test_parse_cpuinfo_arm_without_model_name():
    text = "processor\t: 0\nBogoMIPS\t: 48.00\n\nprocessor\t: 1\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\n"
    assert parse_cpuinfo(text) == ("BCM2835", 2)
    assert parse_cpuinfo("") == ("", 0)


def test_parse_os_release_real(proc_text):
    osr = parse_os_release(proc_text("os-release"))
    assert osr["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert osr["ID"] == "debian" and osr["VERSION_ID"] == "12"


def test_parse_os_release_quoting():
    text = '# comment\nNAME=\'Single Quoted\'\nPRETTY_NAME="Say \\"hi\\" \\$HOME"\nID=plain\nBROKEN\n'
    assert parse_os_release(text) == {"NAME": "Single Quoted", "PRETTY_NAME": 'Say "hi" $HOME', "ID": "plain"}


def test_collect_from_captured_files(tmp_path, proc_dir):
    proc, etc = tmp_path / "proc", tmp_path / "etc"
    proc.mkdir()
    etc.mkdir()
    for name in ("cpuinfo", "meminfo", "mounts"):
        shutil.copy(proc_dir / name, proc / name)
    shutil.copy(proc_dir / "os-release", etc / "os-release")
    (etc / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    gpus = [{"index": 0, "name": "Tesla T4", "uuid": "GPU-x", "memory_total_bytes": 15360 << 20}]
    info = collect_machine_info(gpus=gpus, gpu_driver="515.105.01", proc_root=str(proc), etc_root=str(etc),
                                statvfs=lambda p: FsUsage(10 << 30, 1 << 30, 9 << 30))
    assert info["machine_id"] == "0123456789abcdef0123456789abcdef"
    assert info["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert info["cpu_model"] == "Intel(R) Xeon(R) Processor"
    assert info["memory_total_bytes"] == 24684092 * 1024
    assert info["disks"] == [{"mount": "/", "device": "/dev/vda", "fstype": "ext4", "total_bytes": 10 << 30}]
    assert info["gpus"] == gpus and info["gpu_driver"] == "515.105.01"
    m = msgspec.convert(info, MachineInfo)
    assert m.gpus[0].name == "Tesla T4"


def test_collect_live_machine_without_gpu(no_gpu_env):
    info = collect_machine_info()
    assert set(info) == {"hostname", "machine_id", "os", "kernel", "arch", "cpu_model", "cpu_count",
                         "memory_total_bytes", "disks", "gpus", "gpu_driver"}
    assert info["hostname"] and info["cpu_count"] >= 1 and info["memory_total_bytes"] > 0
    assert info["gpus"] == [] and info["gpu_driver"] == ""
    assert all(d["total_bytes"] > 0 for d in info["disks"])
    msgspec.convert(info, MachineInfo)  # fits the wire protocol
