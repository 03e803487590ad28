"""GPU collectors: NVML, the nvidia-smi fallback, and machines without any of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from agent_runtime.collectors.gpu import GpuCollector, NvidiaSmiScreen, run_command
from agent_runtime.collectors.nvidia import MIB, QUERY_ARGV

# ------------------------------------------------------------------ no GPU at all


def test_machine_without_gpu_gives_no_keys_and_a_reason(no_gpu_env):
    g = GpuCollector()
    assert g.sample(0.0) == {}
    assert g.read() == []
    assert g.backend == "none"
    assert "nvidia-smi not on PATH" in g.reason and "pynvml" in g.reason
    assert g.inventory() == ([], "")
    g.close()


def test_no_gpu_probe_is_not_repeated_every_sample(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "pynvml", None)
    g = GpuCollector(which=lambda name: calls.append(name) or None, reprobe_s=300, clock=lambda: now)
    now = 0.0
    for now in (0.0, 1.0, 2.0, 299.0):
        assert g.sample(now) == {}
    assert len(calls) == 1
    now = 301.0
    g.sample(now)
    assert len(calls) == 2  # re-probed: a driver may have been installed since


def test_real_collectors_without_gpu(no_gpu_env):
    from agent_runtime.collectors.real import RealCollectors

    rc = RealCollectors()
    for t in (0.0, 1.0):
        values, text = rc.sample(t)
        assert not [k for k in values if k.startswith("gpu[")]
        assert text == {}
    info = rc.machine_info()
    assert info["gpus"] == [] and info["gpu_driver"] == ""


def test_screen_absent_gives_nothing(no_gpu_env):
    s = NvidiaSmiScreen()
    assert s.sample(0.0) == {}
    assert s.reason == "nvidia-smi not on PATH"


# ------------------------------------------------------------------ NVML (a stand-in module)


class _NVMLError(Exception):
    pass


def _fake_pynvml(init_error: bool = False, mig_gpu: int | None = None) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = _NVMLError
    m.NVML_TEMPERATURE_GPU = 0
    state = {"shutdown": 0}

    def init():
        if init_error:
            raise _NVMLError("Driver Not Loaded")

    def util(h):
        if h == mig_gpu:
            raise _NVMLError("Not Supported")
        return types.SimpleNamespace(gpu=90 + h, memory=40)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: state.__setitem__("shutdown", state["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlSystemGetDriverVersion = lambda: "565.57.01"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3" if h else "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h:08d}-0000-0000-0000-000000000000"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=70 * 1024 * MIB, total=81559 * MIB, free=0)
    m.nvmlDeviceGetUtilizationRates = util
    m.nvmlDeviceGetTemperature = lambda h, sensor: 60 + h
    m.nvmlDeviceGetPowerUsage = lambda h: 654321  # milliwatts
    m.state = state
    return m


def test_nvml_backend(monkeypatch):
    fake = _fake_pynvml(mig_gpu=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    g = GpuCollector(which=lambda n: None)
    s = g.sample(0.0)
    assert g.backend == "nvml" and g.reason is None
    assert s["gpu[0].util_percent"] == 90.0
    assert "gpu[1].util_percent" not in s  # NotSupported (MIG): that field skipped, rest kept
    assert s["gpu[1].mem_used_bytes"] == 70 * 1024 * MIB
    assert s["gpu[0].mem_total_bytes"] == 81559 * MIB
    assert s["gpu[0].mem_util_percent"] == pytest.approx(100 * 70 * 1024 / 81559)
    assert s["gpu[1].temp_c"] == 61.0
    assert s["gpu[0].power_w"] == pytest.approx(654.321)
    gpus, driver = g.inventory()
    assert driver == "565.57.01"
    assert [x["name"] for x in gpus] == ["NVIDIA H100 80GB HBM3"] * 2  # bytes names decoded
    g.close()
    assert fake.state["shutdown"] == 1


def test_nvml_init_failure_falls_back_to_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error=True))
    g = GpuCollector(which=lambda n: None)
    assert g.sample(0.0) == {}
    assert "Driver Not Loaded" in g.reason


# ------------------------------------------------------------------ nvidia-smi fallback


def _runner(outputs: dict[str, tuple[int, str] | Exception]):
    def run(argv, timeout):
        key = "query" if tuple(argv) == QUERY_ARGV else ("driver" if len(argv) > 1 else "screen")
        out = outputs[key]
        if isinstance(out, Exception):
            raise out
        return out

    return run


def test_smi_fallback(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    run = _runner({"driver": (0, "565.57.01\n565.57.01\n"),
                   "query": (0, "0, NVIDIA H100 80GB HBM3, GPU-a, 100, 71234, 81559, 66, 690.5\n"
                                "1, NVIDIA H100 80GB HBM3, GPU-b, 98, 71234, 81559, 64, [N/A]\n")})
    g = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi", runner=run)
    s = g.sample(0.0)
    assert g.backend == "nvidia-smi" and g.driver_version == "565.57.01"
    assert s["gpu[0].util_percent"] == 100.0 and s["gpu[0].power_w"] == 690.5
    assert s["gpu[1].mem_used_bytes"] == 71234 * MIB and "gpu[1].power_w" not in s


def test_smi_driver_error_means_no_gpus(monkeypatch, nvsmi):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    text = nvsmi("error-couldnt-communicate-with-driver.txt")
    g = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi", runner=_runner({"driver": (9, text)}))
    assert g.sample(0.0) == {}
    assert g.backend == "none" and "couldn't communicate with the NVIDIA driver" in g.reason


def test_smi_no_devices_means_no_gpus(monkeypatch, nvsmi):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    text = nvsmi("error-no-devices-found.txt")
    g = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi", runner=_runner({"driver": (6, text)}))
    assert g.sample(0.0) == {} and "no NVIDIA GPU found" in g.reason


def test_smi_timeout_and_missing_binary(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    g = GpuCollector(which=lambda n: "/x/nvidia-smi",
                     runner=_runner({"driver": subprocess.TimeoutExpired("nvidia-smi", 5)}))
    assert g.sample(0.0) == {} and "timed out" in g.reason
    g = GpuCollector(which=lambda n: "/x/nvidia-smi", runner=_runner({"driver": FileNotFoundError(2, "gone")}))
    assert g.sample(0.0) == {} and "gone" in g.reason


def test_smi_query_timeout_after_working_probe(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    now = [0.0]
    run = _runner({"driver": (0, "565.57.01\n"), "query": subprocess.TimeoutExpired("nvidia-smi", 5)})
    g = GpuCollector(which=lambda n: "/x/nvidia-smi", runner=run, clock=lambda: now[0])
    assert g.sample() == {} and "timed out" in g.reason
    assert g.backend == "nvidia-smi"


def _script(tmp_path: Path, body: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "nvidia-smi"
    exe.write_text(f"#!{sys.executable}\n" + body)  # PATH holds only this dir: no /bin tools
    exe.chmod(0o755)
    return bindir


@pytest.mark.skipif(os.name != "posix", reason="executable-script stand-in")
def test_real_subprocess_error_output(monkeypatch, tmp_path, nvsmi_dir):
    err = nvsmi_dir / "error-couldnt-communicate-with-driver.txt"
    monkeypatch.setitem(sys.modules, "pynvml", None)
    body = f"import sys\nsys.stdout.write(open({str(err)!r}).read())\nsys.exit(9)\n"
    monkeypatch.setenv("PATH", str(_script(tmp_path, body)))
    g = GpuCollector()
    assert g.sample(0.0) == {} and "driver" in g.reason
    screen = NvidiaSmiScreen()
    out = screen.sample(0.0)  # the error screen is what an operator needs to see
    assert out == {"nvidia_smi": err.read_text()}


@pytest.mark.skipif(os.name != "posix", reason="executable-script stand-in")
def test_real_subprocess_timeout(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", str(_script(tmp_path, "import time\ntime.sleep(30)\n")))
    t0 = time.monotonic()
    g = GpuCollector(timeout_s=0.3)
    assert g.sample(0.0) == {} and "timed out" in g.reason
    s = NvidiaSmiScreen(timeout_s=0.3)
    assert s.sample(0.0) == {} and "timed out" in s.reason
    assert time.monotonic() - t0 < 5


def test_run_command_returns_stderr_when_stdout_empty():
    rc, text = run_command([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], 10)
    assert (rc, text) == (3, "boom")


# ------------------------------------------------------------------ the screen stream


def test_screen_interval_and_truncation():
    calls = []

    def run(argv, timeout):
        calls.append(tuple(argv))
        return 0, "x" * 100_000

    s = NvidiaSmiScreen(interval_s=30, which=lambda n: "/x/nvidia-smi", runner=run)
    out = s.sample(100.0)
    assert len(out["nvidia_smi"]) == 64 * 1024
    assert s.sample(110.0) == {} and s.sample(129.9) == {}
    assert s.sample(130.0) != {}
    assert s.sample(50.0) != {}  # the clock went back: run again rather than stall
    assert calls == [("nvidia-smi",)] * 3
