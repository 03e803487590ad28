"""Healthchecks on the agent: built-in checks, custom check scripts, on an interval.

Built-in checks read what the agent already has: the latest metric sample
(``disk``: the fullest filesystem, ``memory``; ``gpu_count``: GPUs seen now vs
GPUs registered) plus, on real machines with GPUs, ``nvidia_smi`` (does
``nvidia-smi -L`` answer) and, where NVML reports them, ``gpu_ecc`` (volatile
uncorrected ECC errors) and ``gpu_xid`` (critical XID events since the last
round). Custom checks are commands listed in agent.toml (``[[checks]]``),
run with the executor (own process group, killed on timeout); exit 0 passes.

The evaluation functions are pure (values in, ``CheckResult`` out); the
``HealthMonitor`` runs them every ``health_interval`` (its own ``run()`` task, or
``tick()`` from a simulator's timer shared by every machine) and hands each round,
as a ``health`` message, to the agent, which sends it when connected. A
machine with any failed check is *unhealthy* on the control plane.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from typing import Callable, Iterable, Mapping

from centrality_core import protocol as p
from centrality_core.aio import within
from centrality_core.summary import split_key

from . import executor
from .config import AgentConfig, CheckConfig

log = logging.getLogger("centrality.agent.health")

#: XIDs that mean the GPU (not the application) is in trouble. Others are reported, not failed.
#: https://docs.nvidia.com/deploy/xid-errors/
CRITICAL_XIDS = frozenset({48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120, 140})
DETAIL_MAX = 1024
_GPU_LINE = re.compile(r"^GPU \d+:", re.M)


def _result(name: str, ok: bool, detail: str = "", duration: float = 0.0) -> p.CheckResult:
    return p.CheckResult(name=name[:64], ok=ok, detail=detail[:DETAIL_MAX],
                         duration=round(min(max(duration, 0.0), 86400.0), 3))


# ------------------------------------------------------------------ pure evaluation


def check_disk(values: Mapping[str, float], max_percent: float) -> p.CheckResult | None:
    """The fullest filesystem against ``max_percent``; None when no filesystem is sampled."""
    full = {split_key(k).instance: v for k, v in values.items()
            if v is not None and k.startswith("fs[") and k.endswith("].percent")}
    if not full:
        return None
    mount, worst = max(full.items(), key=lambda kv: kv[1])
    over = sorted(m for m, v in full.items() if v > max_percent)
    if over:
        return _result("disk", False, "over %g%% full: %s" % (
            max_percent, ", ".join(f"{m} {full[m]:.0f}%" for m in over)))
    return _result("disk", True, f"fullest: {mount} {worst:.0f}%")


def check_memory(values: Mapping[str, float], max_percent: float) -> p.CheckResult | None:
    used = values.get("mem.percent")
    if used is None:
        return None
    return _result("memory", used <= max_percent, f"{used:.0f}% used (limit {max_percent:g}%)")


def gpus_seen(values: Mapping[str, float]) -> int:
    return len({split_key(k).instance for k in values if k.startswith("gpu[")})


def check_gpu_count(values: Mapping[str, float], registered: int) -> p.CheckResult | None:
    """GPUs in the latest sample against the GPUs the machine registered with."""
    seen = gpus_seen(values)
    if registered == 0 and seen == 0:
        return None
    return _result("gpu_count", seen == registered, f"{seen} GPUs visible, {registered} registered")


def check_nvidia_smi(result: executor.Result, output: str) -> p.CheckResult:
    listed = len(_GPU_LINE.findall(output))
    if result.ok and listed:
        return _result("nvidia_smi", True, f"{listed} GPUs listed", result.duration)
    why = result.error or (f"exit {result.exit_code}" if result.exit_code else "listed no GPU")
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return _result("nvidia_smi", False, f"{why}: {last}" if last else why, result.duration)


def check_gpu_errors(ecc_uncorrected: Mapping[int, int | None],
                     xids: Iterable[tuple[int, int]]) -> list[p.CheckResult]:
    """ECC and XID results from what NVML reported (GPUs where NVML cannot tell are left out)."""
    out = []
    known = {i: n for i, n in ecc_uncorrected.items() if n is not None}
    if known:
        bad = {i: n for i, n in sorted(known.items()) if n > 0}
        out.append(_result("gpu_ecc", not bad, ", ".join(
            f"GPU {i}: {n} uncorrected ECC errors" for i, n in bad.items()) if bad else ""))
    xids = list(xids)
    critical = [(g, x) for g, x in xids if x in CRITICAL_XIDS]
    if xids or ecc_uncorrected:
        out.append(_result("gpu_xid", not critical, ", ".join(
            f"GPU {g}: XID {x}{'' if x in CRITICAL_XIDS else ' (application)'}" for g, x in xids)))
    return out


def check_custom(check: CheckConfig, result: executor.Result, output: str) -> p.CheckResult:
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if result.ok:
        return _result(check.name, True, last, result.duration)
    why = result.error or (f"killed by signal {result.signal}" if result.signal
                           else f"exit {result.exit_code}")
    return _result(check.name, False, f"{why}: {last}" if last else why, result.duration)


def builtin_checks(values: Mapping[str, float], cfg: AgentConfig, registered_gpus: int) -> list[p.CheckResult]:
    """The checks computed from the latest sample alone."""
    return [r for r in (check_disk(values, cfg.disk_max_percent),
                        check_memory(values, cfg.memory_max_percent),
                        check_gpu_count(values, registered_gpus)) if r is not None]


def command_argv(check: CheckConfig) -> list[str]:
    return ["sh", "-c", check.command] if isinstance(check.command, str) else list(check.command)


# ------------------------------------------------------------------ NVML


class NvmlErrors:
    """ECC counters and XID events from NVML, when it is there. Blocking: call in a thread."""

    def __init__(self) -> None:
        self._nv = None
        self._handles: list = []
        self._events = None
        self.unavailable = ""

    def _init(self) -> bool:
        if self._nv is not None:
            return True
        if self.unavailable:
            return False
        try:
            import pynvml as nv

            nv.nvmlInit()
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        except Exception as exc:  # ImportError, NVMLError, OSError
            self.unavailable = f"NVML unavailable: {exc}"
            return False
        self._nv = nv
        try:
            self._events = nv.nvmlEventSetCreate()
            for h in self._handles:
                try:
                    nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, self._events)
                except Exception:  # NotSupported on some GPUs
                    pass
        except Exception:
            self._events = None
        return True

    def read(self) -> tuple[dict[int, int | None], list[tuple[int, int]]]:
        if not self._init():
            return {}, []
        nv = self._nv
        ecc: dict[int, int | None] = {}
        for i, h in enumerate(self._handles):
            try:
                ecc[i] = int(nv.nvmlDeviceGetTotalEccErrors(
                    h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC))
            except Exception:
                ecc[i] = None
        xids = []
        if self._events is not None:
            for _ in range(256):  # drain what arrived since the last round, without waiting
                try:
                    data = nv.nvmlEventSetWait_v2(self._events, 0)
                except Exception:  # NVML_ERROR_TIMEOUT: nothing more
                    break
                try:
                    gpu = int(nv.nvmlDeviceGetIndex(data.device))
                except Exception:
                    gpu = -1
                xids.append((gpu, int(data.eventData)))
        return ecc, xids


# ------------------------------------------------------------------ the monitor


class HealthMonitor:
    """Runs every check each ``cfg.health_interval`` and reports the round."""

    def __init__(self, cfg: AgentConfig, *, values: Callable[[], Mapping[str, float]],
                 registered_gpus: int, probe_gpus: bool,
                 on_report: Callable[[p.HealthReport], None]) -> None:
        self.cfg = cfg
        self.values = values
        self.registered_gpus = registered_gpus
        self.probe_gpus = probe_gpus
        self.on_report = on_report
        self.last: p.HealthReport | None = None
        self.rounds = 0
        self._nvml = NvmlErrors() if probe_gpus and registered_gpus else None
        self._in_flight: asyncio.Future | None = None  # a round of ``tick()`` running commands

    @property
    def enabled(self) -> bool:
        return self.cfg.health_interval > 0

    @property
    def first_delay(self) -> float:
        """The first round as soon as a sample is likely there, then on the interval."""
        return min(self.cfg.health_interval, self.cfg.sample_interval + 0.5)

    async def run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            started = time.monotonic()
            await self._round_reported()
            await asyncio.sleep(max(0.0, self.cfg.health_interval - (time.monotonic() - started)))

    def tick(self) -> None:
        """One round now, from a timer its owner runs (a simulator's shared one, instead of
        ``run()``'s task per machine): reported at once when every check is built in, else
        from a task that lives as long as the checks' commands; skipped while one is running."""
        if self._in_flight is not None and not self._in_flight.done():
            return
        if self.cfg.checks or self._probes_nvidia_smi() or self._nvml is not None:
            self._in_flight = asyncio.ensure_future(self._round_reported())
            return
        try:
            self._reported(self._report(builtin_checks(self.values() or {}, self.cfg, self.registered_gpus)))
        except Exception:  # noqa: BLE001 - a broken check must not stop the agent
            log.exception("healthcheck round failed")

    async def _round_reported(self) -> None:
        try:
            self._reported(await self.round())
        except Exception:  # noqa: BLE001 - a broken check must not stop the agent
            log.exception("healthcheck round failed")

    def _reported(self, report: p.HealthReport) -> None:
        self.last = report
        self.rounds += 1
        self.on_report(report)

    def _probes_nvidia_smi(self) -> bool:
        return self.probe_gpus and bool(self.registered_gpus or shutil.which("nvidia-smi"))

    @staticmethod
    def _report(results: list[p.CheckResult]) -> p.HealthReport:
        return p.HealthReport(ts=time.time(), checks=results[:128])

    async def round(self) -> p.HealthReport:
        results = builtin_checks(self.values() or {}, self.cfg, self.registered_gpus)
        jobs = [self._custom(c) for c in self.cfg.checks[:100]]
        if self._probes_nvidia_smi():
            jobs.append(self._nvidia_smi())
        if self._nvml is not None:
            jobs.append(self._gpu_errors())
        for r in await asyncio.gather(*jobs):
            results.extend(r if isinstance(r, list) else [r])
        return self._report(results)

    async def _run(self, argv: list[str], timeout: float) -> tuple[executor.Result, str]:
        out: list[str] = []
        size = [0]

        def keep(_stream: str, text: str) -> None:
            if size[0] < 8192:
                out.append(text)
                size[0] += len(text)

        r = await executor.run(argv, timeout=timeout, max_output_bytes=65536, on_output=keep,
                               kill_grace=min(self.cfg.kill_grace, 2.0))
        return r, "".join(out)

    async def _custom(self, check: CheckConfig) -> p.CheckResult:
        r, out = await self._run(command_argv(check), check.timeout or self.cfg.health_timeout)
        return check_custom(check, r, out)

    async def _nvidia_smi(self) -> p.CheckResult:
        r, out = await self._run(["nvidia-smi", "-L"], self.cfg.health_timeout)
        return check_nvidia_smi(r, out)

    async def _gpu_errors(self) -> list[p.CheckResult]:
        loop = asyncio.get_running_loop()
        try:
            ecc, xids = await within(loop.run_in_executor(None, self._nvml.read),
                                               self.cfg.health_timeout)
        except asyncio.TimeoutError:
            return [_result("gpu_ecc", False, f"NVML did not answer within {self.cfg.health_timeout:g}s")]
        return check_gpu_errors(ecc, xids)
