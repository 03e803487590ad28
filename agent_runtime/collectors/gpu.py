"""GPU collectors: NVML when available, else ``nvidia-smi``, else nothing.

Nothing here raises to the caller. A machine without GPUs, driver, NVML or
``nvidia-smi`` simply yields no ``gpu[...]`` keys, and ``GpuCollector.reason``
says why (set once, when the backend is chosen or fails).

``pynvml`` (package nvidia-ml-py) is imported lazily, on first use, never at
import time. Sample units: percent, bytes, degrees Celsius, watts (see
``nvidia.readings_to_sample``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from .nvidia import (
    QUERY_ARGV, GpuReading, detect_error, parse_query_csv, readings_to_info, readings_to_sample,
)

#: ``runner(argv, timeout_s) -> (exit status, output text)``; raises OSError / TimeoutExpired.
Runner = Callable[[Sequence[str], float], tuple[int, str]]
#: ``which(name) -> path or None`` (``shutil.which``).
Which = Callable[[str], str | None]
#: A driver version line ("535.104.05", "610.62").
_VERSION = re.compile(r"^\d{2,4}\.\d{1,3}(?:\.\d{1,3})?$")
#: Longest text stream the wire protocol accepts, in characters.
MAX_TEXT = 64 * 1024


def run_command(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run ``argv``; return (exit status, stdout, or stderr when stdout is empty).

    On timeout the child is killed and ``subprocess.TimeoutExpired`` raised. A
    child that will not die (nvidia-smi stuck in the kernel on a hung GPU) is
    abandoned after one more second rather than waited for forever.
    """
    p = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace",
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        raise
    return p.returncode, out if out.strip() else err


class GpuCollector:
    """Per-GPU utilisation, memory, temperature and power.

    Backend, chosen lazily on first use: ``"nvml"`` if pynvml imports and
    ``nvmlInit`` succeeds; else ``"nvidia-smi"`` if it is on PATH and lists
    GPUs; else ``"none"``. With ``"none"`` the probe is retried every
    ``reprobe_s`` seconds (a driver may be installed later).
    """

    def __init__(
        self, *, use_nvml: bool = True, timeout_s: float = 5.0, reprobe_s: float = 300.0,
        which: Which = shutil.which, runner: Runner = run_command,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.use_nvml = use_nvml
        self.timeout_s = timeout_s
        self.reprobe_s = reprobe_s
        self._which = which
        self._run = runner
        self._clock = clock
        #: "nvml", "nvidia-smi", "none", or None before the first probe.
        self.backend: str | None = None
        #: Why there are no GPU streams (None while GPUs are being reported).
        self.reason: str | None = None
        self.driver_version = ""
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._retry_at = 0.0
        #: The readings of the last ``read`` (the process collector places processes with them).
        self.last: list[GpuReading] = []

    @property
    def nvml(self) -> Any:
        """The pynvml module in use (None unless the backend is NVML)."""
        return self._nvml if self.backend == "nvml" else None

    @property
    def handles(self) -> list[Any]:
        """NVML device handles, by GPU index (empty unless the backend is NVML)."""
        return list(self._handles) if self.backend == "nvml" else []

    # ------------------------------------------------------------ probing

    def _probe(self) -> None:
        self._retry_at = self._clock() + self.reprobe_s
        nvml_reason = self._probe_nvml() if self.use_nvml else "NVML disabled"
        if nvml_reason is None:
            self.backend, self.reason = "nvml", None
            return
        smi_reason = self._probe_smi()
        if smi_reason is None:
            self.backend, self.reason = "nvidia-smi", None
            return
        self.backend = "none"
        self.reason = f"no GPUs: {smi_reason} ({nvml_reason})"

    def _probe_nvml(self) -> str | None:
        try:
            import pynvml
        except Exception as e:  # ImportError, or a broken install
            return f"pynvml unavailable: {e}"
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            driver = _s(pynvml.nvmlSystemGetDriverVersion())
        except Exception as e:  # pynvml.NVMLError and OSError from the library loader
            return f"NVML: {e}"
        if not handles:
            _quiet(pynvml.nvmlShutdown)
            return "NVML found no GPU"
        self._nvml, self._handles, self.driver_version = pynvml, handles, driver
        return None

    def _probe_smi(self) -> str | None:
        if self._which("nvidia-smi") is None:
            return "nvidia-smi not on PATH"
        try:
            rc, text = self._run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 self.timeout_s)
        except subprocess.TimeoutExpired:
            return f"nvidia-smi timed out after {self.timeout_s:g} s"
        except OSError as e:
            return f"nvidia-smi: {e}"
        # A valid answer counts whatever the exit status: nvidia-smi exits 14 with a
        # corrupted infoROM (after a WARNING line) and still answers for every GPU.
        version = next((ln.strip() for ln in text.splitlines() if _VERSION.match(ln.strip())), "")
        if not version:
            return detect_error(text) or f"nvidia-smi exited with status {rc}: {text.strip()[:200]}"
        self.driver_version = version
        return None

    # ------------------------------------------------------------ reading

    def read(self) -> list[GpuReading]:
        """Current readings, ``[]`` if there are no usable GPUs. Never raises."""
        try:
            if self.backend is None or (self.backend == "none" and self._clock() >= self._retry_at):
                self._probe()
            if self.backend == "nvml":
                self.last = self._read_nvml()
                return self.last
            if self.backend == "nvidia-smi":
                self.last = self._read_smi()
                return self.last
        except Exception as e:  # last line of defence: a collector must not kill the agent
            self.reason = f"GPU collector error: {e!r}"
        return []

    def sample(self, now: float | None = None) -> dict[str, float]:
        """``gpu[i].*`` keys for the current instant (``now`` is unused, for symmetry)."""
        return readings_to_sample(self.read())

    def inventory(self) -> tuple[list[dict], str]:
        """``([{index, name, uuid, memory_total_bytes}], driver_version)`` for machine info."""
        return readings_to_info(self.read()), self.driver_version

    def _read_nvml(self) -> list[GpuReading]:
        nv = self._nvml
        out: list[GpuReading] = []
        for i, h in enumerate(self._handles):
            r = GpuReading(index=i, driver_version=self.driver_version)
            r.name = _s(_try(nv.nvmlDeviceGetName, h) or "")
            r.uuid = _s(_try(nv.nvmlDeviceGetUUID, h) or "")
            mem = _try(nv.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                r.mem_used_bytes, r.mem_total_bytes = float(mem.used), float(mem.total)
            util = _try(nv.nvmlDeviceGetUtilizationRates, h)  # NotSupported on MIG GPUs
            if util is not None:
                r.util_percent, r.mem_busy_percent = float(util.gpu), float(util.memory)
            temp = _try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            r.temp_c = float(temp) if temp is not None else None
            mw = _try(nv.nvmlDeviceGetPowerUsage, h)  # milliwatts
            r.power_w = mw / 1000.0 if mw is not None else None
            out.append(r)
        return out

    def _read_smi(self) -> list[GpuReading]:
        if self._clock() < self._retry_at and self.reason:
            return []  # backing off after a timeout or failure
        try:
            rc, text = self._run(QUERY_ARGV, self.timeout_s)
        except subprocess.TimeoutExpired:
            return self._smi_failed(f"nvidia-smi timed out after {self.timeout_s:g} s")
        except OSError as e:
            return self._smi_failed(f"nvidia-smi: {e}")
        readings = parse_query_csv(text)
        if not readings:
            return self._smi_failed(detect_error(text) or f"nvidia-smi (status {rc}) listed no GPU")
        self.reason = None
        for r in readings:
            r.driver_version = self.driver_version
        return readings

    def _smi_failed(self, reason: str) -> list[GpuReading]:
        self.reason = reason
        self._retry_at = self._clock() + min(self.reprobe_s, 60.0)
        return []

    def close(self) -> None:
        """Release NVML (safe to call more than once)."""
        if self._nvml is not None:
            _quiet(self._nvml.nvmlShutdown)
            self._nvml, self._handles = None, []
        self.backend = None


class NvidiaSmiScreen:
    """The plain ``nvidia-smi`` screen as the text stream ``nvidia_smi``.

    Runs at most once per ``interval_s`` (by the caller's ``now``, seconds),
    with a timeout; returns ``{}`` between runs and when nvidia-smi is absent
    or fails to run. An error message printed by nvidia-smi (driver not
    loaded...) *is* returned: that is what an operator needs to see.
    """

    def __init__(
        self, interval_s: float = 30.0, timeout_s: float = 10.0, *,
        which: Which = shutil.which, runner: Runner = run_command,
    ) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._which = which
        self._run = runner
        self._last: float | None = None
        self._backoff = 0.0
        #: Why the last attempt gave no text (None after a success).
        self.reason: str | None = None

    def sample(self, now: float) -> dict[str, str]:
        if self._last is not None and 0 <= now - self._last < max(self.interval_s, self._backoff):
            return {}
        self._last, self._backoff = now, 0.0
        if self._which("nvidia-smi") is None:
            self.reason = "nvidia-smi not on PATH"
            return {}
        try:
            _, text = self._run(["nvidia-smi"], self.timeout_s)
        except subprocess.TimeoutExpired:
            self.reason = f"nvidia-smi timed out after {self.timeout_s:g} s"
            self._backoff = 10 * self.interval_s  # a hung GPU: do not pile up stuck processes
            return {}
        except OSError as e:
            self.reason = f"nvidia-smi: {e}"
            return {}
        self.reason = None
        return {"nvidia_smi": text[:MAX_TEXT]} if text.strip() else {}


def _try(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported, GPU lost, ...: skip this field
        return None


def _quiet(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        pass


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


__all__ = ["GpuCollector", "NvidiaSmiScreen", "run_command"]
