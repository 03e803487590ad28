"""The gpu_processes stream: NVML (a stand-in module), the nvidia-smi fallback on
reconstructed captures, /proc resolution, bounds and hostile process names."""

from __future__ import annotations

import getpass
import os
import sys
import types
from pathlib import Path

import msgspec
import pytest

from agent_runtime.collectors.gpu import GpuCollector
from agent_runtime.collectors.gpu_procs import GpuProcessCollector, ProcResolver
from agent_runtime.collectors.nvidia import MIB
from agent_runtime.collectors.nvidia_apps import APPS_ARGV, parse_compute_apps
from centrality_core import protocol as p

DATA = Path(__file__).resolve().parents[2] / "data" / "nvidia-smi"
UUID0 = "GPU-4c6f8d1e-2b3a-5d7e-9f01-23456789abcd"
UUID1 = "GPU-7d2e9a0b-4c5f-6e8d-1a2b-3c4d5e6f7a8b"


class NVMLError(Exception):
    pass


def fake_nvml(*, mig: bool = False, util_supported: bool = True, procs=None,
              mig_needs_privileges: bool = False) -> types.ModuleType:
    """A pynvml stand-in: 2 GPUs; GPU 0 runs a trainer (compute) and Xorg (graphics+compute)."""
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0
    m.NVML_DEVICE_MIG_ENABLE = 1
    P = types.SimpleNamespace
    compute = procs if procs is not None else {
        0: [P(pid=4242, usedGpuMemory=70 * 1024 * MIB, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF),
            P(pid=900, usedGpuMemory=None, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)],
        1: [P(pid=5151, usedGpuMemory=9826 * MIB, gpuInstanceId=5, computeInstanceId=0)] if mig else [],
    }
    graphics = {0: [P(pid=900, usedGpuMemory=None, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)], 1: []}
    calls = {"util_since": []}

    def util(h, since):
        calls["util_since"].append(since)
        if not util_supported:
            raise NVMLError("Not Supported")
        if h != 0:
            raise NVMLError("Not Found")
        return [P(pid=4242, timeStamp=1000, smUtil=91, memUtil=40, encUtil=0, decUtil=0),
                P(pid=4242, timeStamp=2000, smUtil=97, memUtil=44, encUtil=0, decUtil=0),
                P(pid=31337, timeStamp=2000, smUtil=5, memUtil=1, encUtil=0, decUtil=0)]

    def mig_handle(h, i):
        if not mig or h != 1 or i > 1:
            raise NVMLError("Not Found")
        return ("mig", i)

    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlSystemGetDriverVersion = lambda: "550.127.05"
    m.nvmlDeviceGetName = lambda h: (f"NVIDIA A100-SXM4-40GB MIG {('3g.20gb', '2g.10gb')[h[1]]}"
                                     if isinstance(h, tuple) else "NVIDIA A100-SXM4-40GB")
    m.nvmlDeviceGetUUID = lambda h: f"MIG-{h[1]:04d}" if isinstance(h, tuple) else f"GPU-{h}"
    m.nvmlDeviceGetMemoryInfo = lambda h: P(used=(9826 if isinstance(h, tuple) else 20000) * MIB,
                                            total=(19968 if isinstance(h, tuple) else 40960) * MIB, free=0)
    m.nvmlDeviceGetUtilizationRates = lambda h: P(gpu=50, memory=20)
    m.nvmlDeviceGetTemperature = lambda h, s: 50
    m.nvmlDeviceGetPowerUsage = lambda h: 100000
    def listing(table):
        def get(h):
            if isinstance(h, tuple):  # a MIG device: its own processes (gi/ci unknown to NVML here)
                return [P(pid=7000 + h[1], usedGpuMemory=(2000 + h[1]) * MIB, gpuInstanceId=0xFFFFFFFF,
                          computeInstanceId=0xFFFFFFFF)] if table is compute else []
            if mig_needs_privileges and h == 1:
                raise NVMLError("Insufficient Permissions")
            return table[h]
        return get

    m.nvmlDeviceGetComputeRunningProcesses = listing(compute)
    m.nvmlDeviceGetGraphicsRunningProcesses = listing(graphics)
    m.nvmlDeviceGetProcessUtilization = util
    m.nvmlDeviceGetMigMode = lambda h: (1, 1) if (mig and h == 1) else (0, 0)
    m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    m.nvmlDeviceGetGpuInstanceId = lambda h: (3, 5)[h[1]]
    m.nvmlDeviceGetComputeInstanceId = lambda h: 0
    m.calls = calls
    return m


def fake_proc(root: Path, pid: int, uid: int, cmdline: bytes, comm: str = "python") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "status").write_text(f"Name:\t{comm}\nUmask:\t0022\nState:\tR (running)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "cmdline").write_bytes(cmdline)
    (d / "comm").write_text(comm + "\n")


USERS = {1000: "alice", 1001: "bob", 0: "root"}


@pytest.fixture
def proc_root(tmp_path):
    root = tmp_path / "proc"
    fake_proc(root, 4242, 1000, b"python\0train.py\0--config\0llama-70b.yaml\0")
    fake_proc(root, 900, 0, b"/usr/lib/xorg/Xorg\0:0\0", "Xorg")
    fake_proc(root, 5151, 1001, b"", "jupyter-kernel")  # empty cmdline: comm is used
    return root


def resolver(root: Path) -> ProcResolver:
    return ProcResolver(root, users=lambda uid: USERS.get(uid, str(uid)))


def nvml_collector(monkeypatch, proc_root, **kw) -> GpuProcessCollector:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(**kw))
    gpu = GpuCollector(which=lambda n: None)
    gpu.read()
    return GpuProcessCollector(gpu, resolver=resolver(proc_root))


# ------------------------------------------------------------------ NVML


def test_nvml_processes_users_commands_and_utilisation(monkeypatch, proc_root):
    c = nvml_collector(monkeypatch, proc_root)
    snap = c.sample(100.0)
    assert snap.source == "nvml" and snap.ts == 100.0 and snap.omitted == 0
    trainer, xorg = snap.processes  # largest GPU memory first
    assert (trainer.gpu, trainer.pid, trainer.type, trainer.user) == (0, 4242, "C", "alice")
    assert trainer.command == "python train.py --config llama-70b.yaml"
    assert trainer.used_memory_bytes == 70 * 1024 * MIB
    assert (trainer.sm_percent, trainer.mem_percent) == (97.0, 44.0)  # the newest sample of that pid
    assert (xorg.pid, xorg.type, xorg.user, xorg.command) == (900, "C+G", "root", "/usr/lib/xorg/Xorg :0")
    assert xorg.used_memory_bytes is None and xorg.sm_percent is None
    assert snap.mig == []
    assert c.sample(102.0) is None  # not due yet
    assert c.sample(105.0) is not None
    assert monkeypatch_calls_since(c) == [0, 2000]  # asks only for samples newer than the last seen


def monkeypatch_calls_since(c):
    return c.gpu.nvml.calls["util_since"]


def test_nvml_mig_instances_and_processes_in_them(monkeypatch, proc_root):
    c = nvml_collector(monkeypatch, proc_root, mig=True)
    snap = c.sample(0.0)
    assert [(m.gpu, m.gi, m.ci, m.profile, m.uuid) for m in snap.mig] == [
        (1, 3, 0, "3g.20gb", "MIG-0000"), (1, 5, 0, "2g.10gb", "MIG-0001")]
    assert snap.mig[0].mem_used_bytes == 9826 * MIB and snap.mig[0].mem_total_bytes == 19968 * MIB
    (kernel,) = [x for x in snap.processes if x.gpu == 1]
    assert (kernel.gi, kernel.ci, kernel.user, kernel.command) == (5, 0, "bob", "jupyter-kernel")


def test_nvml_mig_processes_per_instance_without_privileges(monkeypatch, proc_root):
    snap = nvml_collector(monkeypatch, proc_root, mig=True, mig_needs_privileges=True).sample(0.0)
    on1 = sorted((x.pid, x.gi, x.ci, x.used_memory_bytes) for x in snap.processes if x.gpu == 1)
    assert on1 == [(7000, 3, 0, 2000 * MIB), (7001, 5, 0, 2001 * MIB)]  # placed in their MIG instance
    assert {x.pid for x in snap.processes if x.gpu == 0} == {4242, 900}


def test_nvml_without_process_utilisation(monkeypatch, proc_root):
    snap = nvml_collector(monkeypatch, proc_root, util_supported=False).sample(0.0)
    assert all(x.sm_percent is None and x.mem_percent is None for x in snap.processes)
    assert len(snap.processes) == 2


def test_no_gpu_no_stream(no_gpu_env):
    gpu = GpuCollector()
    gpu.read()
    assert GpuProcessCollector(gpu).sample(0.0) is None


# ------------------------------------------------------------------ nvidia-smi fallback


def smi_collector(monkeypatch, proc_root, apps_text: str, uuids=(UUID0, UUID1)):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    query = "".join(f"{i}, NVIDIA A100-SXM4-40GB, {u}, 99, 38000, 40960, 60, 300.5\n" for i, u in enumerate(uuids))
    seen = []

    def run(argv, timeout):
        seen.append(tuple(argv))
        if tuple(argv) == APPS_ARGV:
            return 0, apps_text
        if "--query-gpu=driver_version" in argv:
            return 0, "535.104.05\n"
        return 0, query

    gpu = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi", runner=run)
    gpu.read()
    return GpuProcessCollector(gpu, runner=run, resolver=resolver(proc_root)), seen


def test_smi_fallback_on_capture(monkeypatch, tmp_path):
    root = tmp_path / "proc"
    fake_proc(root, 48213, 1000, b"/opt/conda/bin/python\0-m\0torch.distributed.run\0train.py\0")
    # 48214 is in another PID namespace (a container): no /proc entry, the driver's name stays
    c, seen = smi_collector(monkeypatch, root, (DATA / "csv-compute-apps-noheader-nounits.csv").read_text())
    snap = c.sample(0.0)
    assert snap.source == "nvidia-smi" and APPS_ARGV in seen
    a, b, hidden = snap.processes
    assert (a.gpu, a.pid, a.user, a.used_memory_bytes) == (0, 48213, "alice", 38121 * MIB)
    assert a.command == "/opt/conda/bin/python -m torch.distributed.run train.py"
    assert (b.gpu, b.pid, b.user, b.command) == (1, 48214, "", "/opt/conda/bin/python")
    assert (hidden.gpu, hidden.pid, hidden.used_memory_bytes, hidden.command) == (1, 60111, None, "")


def test_smi_fallback_with_header_and_bus_ids(monkeypatch, tmp_path):
    text = (DATA / "csv-compute-apps-timestamp-2xA100.csv").read_text()
    rows = parse_compute_apps(text)
    assert [(r.pid, r.gpu_bus_id, r.used_memory_bytes) for r in rows] == [
        (48213, "00000000:07:00.0", 38121 * MIB), (48214, "00000000:0F:00.0", 37980 * MIB),
        (51022, "00000000:07:00.0", 1214 * MIB)]
    assert rows[0].gpu_uuid == UUID0 and rows[2].process_name == "/usr/bin/python3.10"


@pytest.mark.parametrize("text", ["", "No running processes found\n",
                                  (DATA / "csv-compute-apps-header-none.csv").read_text()])
def test_smi_no_processes(monkeypatch, tmp_path, text):
    c, _ = smi_collector(monkeypatch, tmp_path, text)
    snap = c.sample(0.0)
    assert snap.processes == [] and snap.omitted == 0


def test_a_gpu_table_is_no_process_list():
    assert parse_compute_apps("0, Tesla T4, GPU-1, 0, 3, 15360, 38, 27.5\n") == []  # pid column: "Tesla T4"
    assert parse_compute_apps("index, name\n0, Tesla T4\n") == []


# ------------------------------------------------------------------ bounds and hostile names


def test_bounded_to_the_largest_and_counted(monkeypatch, tmp_path):
    P = types.SimpleNamespace
    many = [P(pid=10_000 + i, usedGpuMemory=i * MIB, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for i in range(1000)]
    c = nvml_collector(monkeypatch, tmp_path, procs={0: many, 1: []})
    snap = c.sample(0.0)
    assert len(snap.processes) == p.MAX_GPU_PROCESSES and snap.omitted == 1001 - p.MAX_GPU_PROCESSES  # + Xorg
    assert snap.processes[0].pid == 10_999 and min(x.used_memory_bytes for x in snap.processes) == 744 * MIB
    frame = p.encode(p.MetricsBatch(stream="s", seq=1, ts=[0.0], keys=[], gpu_processes=snap))
    assert len(frame) < p.MAX_FRAME_BYTES
    assert p.agent_decoder.decode(frame).gpu_processes == snap


def test_hostile_process_names_are_sanitised_and_truncated(monkeypatch, tmp_path):
    root = tmp_path / "proc"
    evil = b"\x1b]0;pwned\x07\x1b[2J\x1b[31mminer\x1b[0m\0--pool\0" + b"A" * 5000 + b"\0"
    fake_proc(root, 4242, 1000, evil)
    fake_proc(root, 900, 31337, b"x\r\n\x9b31m\0")
    c = nvml_collector(monkeypatch, root)
    snap = c.sample(0.0)
    trainer, xorg = snap.processes
    assert trainer.command.startswith("miner --pool AAA") and len(trainer.command) <= 256
    assert all(ch.isprintable() for ch in trainer.command + xorg.command)
    assert xorg.user == "31337"  # no such user: the uid
    # the wire accepts what the agent made
    p.agent_decoder.decode(p.encode(p.MetricsBatch(stream="s", seq=1, ts=[0.0], keys=[], gpu_processes=snap)))


def test_hostile_names_from_nvidia_smi(monkeypatch, tmp_path):
    text = f"{UUID0}, 7, \x1b[2J\x1b]52;c;cm0gLXJmIC8=\x07/tmp/x{'y' * 400}, 10\n"
    c, _ = smi_collector(monkeypatch, tmp_path, text)
    (x,) = c.sample(0.0).processes
    assert "\x1b" not in x.command and x.command.startswith("/tmp/xyy") and len(x.command) <= 256


def test_real_proc_of_this_process():
    r = ProcResolver()
    assert r.user(os.getpid()) == getpass.getuser()
    assert "python" in r.command(os.getpid()).lower() or "pytest" in r.command(os.getpid())
    assert r.user(2**31) == "" and r.command(2**31) == ""


def test_old_control_plane_gets_no_processes():
    snap = p.GpuProcesses(ts=1.0, processes=[p.GpuProcess(gpu=0, pid=1, user="u", command="c")])
    batch = p.MetricsBatch(stream="s", seq=1, ts=[1.0], keys=["cpu.percent"], columns=[[1.0]], gpu_processes=snap)

    class Old(msgspec.Struct):  # what a 1.1 decoder knows of a batch
        stream: str
        seq: int
        ts: list[float]

    assert msgspec.json.decode(p.encode(batch), type=Old).seq == 1  # unknown field ignored


def test_the_real_pynvml_has_every_function_used():
    """The stand-in module above names the real API: check it against nvidia-ml-py itself."""
    import re

    pynvml = pytest.importorskip("pynvml")
    src = (Path(__file__).resolve().parents[3] / "agent_runtime" / "collectors" / "gpu_procs.py").read_text()
    used = set(re.findall(r"\b(nvml[A-Z]\w+|NVML_[A-Z_]+)\b", src))
    assert len(used) >= 10
    assert sorted(n for n in used if not hasattr(pynvml, n)) == []
