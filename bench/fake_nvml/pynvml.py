"""A stand-in for ``pynvml`` (nvidia-ml-py): 8 fake H100s, for ``bench/agent_footprint.py``.

It answers every NVML call the agent makes (``agent_runtime/collectors/gpu.py``,
``gpu_procs.py`` and ``health.py``) with values that move over time, so the agent
does the same work as on an 8-GPU node: the numbers, the process lists (the
agent's own process and its parent, so ``/proc`` has them), ECC counters and an
XID event set that never fires. The NVML library's own time (ctypes into
libnvidia-ml, the driver's ioctls) is not in it: what it measures is the agent's
side of each call.

Only the benchmark puts this folder on ``PYTHONPATH``; nothing imports it otherwise.
"""

from __future__ import annotations

import math
import os
import time
from types import SimpleNamespace as _P

GPUS = int(os.environ.get("FAKE_NVML_GPUS", "8"))
MIB = 1024 * 1024
TOTAL = 81559 * MIB

NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
nvmlEventTypeXidCriticalError = 8


class NVMLError(Exception):
    """Raised as the real module raises its NVMLError subclasses."""


class NVMLError_Timeout(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def _wave(h: int, period: float = 60.0) -> float:
    """0..1, a slow wave per GPU."""
    return 0.5 + 0.5 * math.sin(time.time() * 2 * math.pi / period + h)


def nvmlInit() -> None:
    pass


def nvmlShutdown() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return "565.57.01"


def nvmlDeviceGetCount() -> int:
    return GPUS


def nvmlDeviceGetHandleByIndex(i: int) -> int:
    if not 0 <= i < GPUS:
        raise NVMLError("Invalid Argument")
    return i


def nvmlDeviceGetIndex(h: int) -> int:
    return h


def nvmlDeviceGetName(h: int) -> str:
    return "NVIDIA H100 80GB HBM3"


def nvmlDeviceGetUUID(h: int) -> str:
    return f"GPU-{h:08x}-fa4e-0000-0000-00000000000{h % 10}"


def nvmlDeviceGetMemoryInfo(h: int):
    used = int((0.2 + 0.7 * _wave(h, 300.0)) * TOTAL)
    return _P(total=TOTAL, used=used, free=TOTAL - used)


def nvmlDeviceGetUtilizationRates(h: int):
    return _P(gpu=int(100 * _wave(h)), memory=int(60 * _wave(h)))


def nvmlDeviceGetTemperature(h: int, sensor: int) -> int:
    return 40 + int(30 * _wave(h))


def nvmlDeviceGetPowerUsage(h: int) -> int:
    return 70000 + int(600000 * _wave(h))  # milliwatts


def _procs(h: int) -> list:
    pid = os.getpid() if h % 2 else os.getppid()
    return [_P(pid=pid, usedGpuMemory=(60000 + h) * MIB, gpuInstanceId=0xFFFFFFFF,
               computeInstanceId=0xFFFFFFFF)]


def nvmlDeviceGetComputeRunningProcesses(h: int) -> list:
    return _procs(h)


def nvmlDeviceGetGraphicsRunningProcesses(h: int) -> list:
    return []


def nvmlDeviceGetProcessUtilization(h: int, since: int) -> list:
    ts = int(time.time() * 1e6)
    return [_P(pid=p.pid, timeStamp=ts, smUtil=int(100 * _wave(h)), memUtil=int(50 * _wave(h)),
               encUtil=0, decUtil=0) for p in _procs(h)]


def nvmlDeviceGetMigMode(h: int):
    return (0, 0)


def nvmlDeviceGetMaxMigDeviceCount(h: int) -> int:
    return 0


def nvmlDeviceGetMigDeviceHandleByIndex(h: int, i: int):
    raise NVMLError("Not Found")


def nvmlDeviceGetGpuInstanceId(h):
    raise NVMLError_NotSupported("Not Supported")


def nvmlDeviceGetComputeInstanceId(h):
    raise NVMLError_NotSupported("Not Supported")


def nvmlDeviceGetTotalEccErrors(h: int, error_type: int, counter_type: int) -> int:
    return 0


def nvmlEventSetCreate():
    return object()


def nvmlDeviceRegisterEvents(h: int, types: int, event_set) -> None:
    pass


def nvmlEventSetWait_v2(event_set, timeout_ms: int):
    raise NVMLError_Timeout("Timeout")
