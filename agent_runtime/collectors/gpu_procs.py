"""Who is on the GPUs: the ``gpu_processes`` stream (protocol 1.2).

Backends follow the ``GpuCollector`` it is given: with NVML, the running
compute and graphics processes of each GPU
(``nvmlDeviceGetComputeRunningProcesses``, ``...GraphicsRunningProcesses``;
per MIG device when the whole GPU's list needs privileges the agent lacks),
their SM and memory utilisation
where the driver gives it (``nvmlDeviceGetProcessUtilization``), and the MIG
instances of a GPU in MIG mode; with nvidia-smi, ``--query-compute-apps``
(compute processes only, no utilisation). User and command are read here
from ``/proc/PID`` (a process of another PID namespace keeps the driver's
process name and no user).

Bounded: at most ``protocol.MAX_GPU_PROCESSES`` processes, the largest by
GPU memory (the count left out is sent); every string is sanitised and
truncated. Never raises; ``sample`` returns None between its intervals and
when there is no GPU.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from centrality_core import protocol as p
from centrality_core.sanitize import one_line

from .gpu import GpuCollector, Runner, run_command
from .nvidia_apps import APPS_ARGV, parse_compute_apps

MAX_COMMAND = 256
MAX_USER = 64
_NA = 0xFFFFFFFF  # NVML's "no instance" id


def _clean(text: str, limit: int) -> str:
    return one_line(text or "", limit).strip()


class ProcResolver:
    """``pid -> (user, command)`` from ``/proc`` (``root`` for tests)."""

    def __init__(self, root: str | Path = "/proc", users: Callable[[int], str] | None = None) -> None:
        self.root = Path(root)
        self._users = users or _user_name
        self._names: dict[int, str] = {}

    def user(self, pid: int) -> str:
        try:
            status = (self.root / str(pid) / "status").read_text(errors="replace")
        except OSError:
            return ""
        for line in status.splitlines():
            if line.startswith("Uid:"):
                parts = line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    uid = int(parts[1])
                    if uid not in self._names:
                        if len(self._names) > 4096:
                            self._names.clear()
                        self._names[uid] = self._users(uid)
                    return _clean(self._names[uid], MAX_USER)
        return ""

    def command(self, pid: int) -> str:
        try:
            with open(self.root / str(pid) / "cmdline", "rb") as f:
                raw = f.read(4 * MAX_COMMAND)
        except OSError:
            raw = b""
        text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if not text:
            try:
                text = (self.root / str(pid) / "comm").read_text(errors="replace")[:64].strip()
            except OSError:
                text = ""
        return _clean(text, MAX_COMMAND)


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


class GpuProcessCollector:
    """The process list of the GPUs ``gpu`` reports, every ``interval_s`` seconds."""

    def __init__(self, gpu: GpuCollector, *, interval_s: float = 5.0, timeout_s: float = 5.0,
                 runner: Runner = run_command, resolver: ProcResolver | None = None,
                 max_processes: int = p.MAX_GPU_PROCESSES) -> None:
        self.gpu = gpu
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._run = runner
        self.resolver = resolver or ProcResolver()
        self.max_processes = max_processes
        self._last: float | None = None
        self._util_ts: dict[int, int] = {}  # GPU -> last NVML utilisation sample time (us)
        #: Why the last attempt listed nothing (None after a success).
        self.reason: str | None = None

    def sample(self, now: float) -> p.GpuProcesses | None:
        if self._last is not None and 0 <= now - self._last < self.interval_s:
            return None
        self._last = now
        try:
            if self.gpu.nvml is not None:
                procs, mig = self._nvml()
                source = "nvml"
            elif self.gpu.backend == "nvidia-smi":
                procs, mig, source = self._smi(), [], "nvidia-smi"
            else:
                return None
        except Exception as e:  # noqa: BLE001 - a collector must not kill the agent
            self.reason = f"GPU processes: {e!r}"
            return None
        self.reason = None
        return self._finish(now, procs, mig, source)

    # ------------------------------------------------------------ NVML

    def _nvml(self) -> tuple[list[dict], list[p.MigInstance]]:
        nv = self.gpu.nvml
        procs: list[dict] = []
        mig: list[p.MigInstance] = []
        for index, h in enumerate(self.gpu.handles):
            instances = self._mig(nv, index, h)
            mig += [m for m, _ in instances]
            seen: dict[int, dict] = {}
            if not self._list(nv, index, h, seen, None):
                # In MIG mode the whole GPU's list needs privileges; each MIG device's does not.
                for m, mh in instances:
                    self._list(nv, index, mh, seen, (m.gi, m.ci))
            procs += seen.values()
            if seen:
                self._process_util(nv, index, h, seen)
        return procs, mig

    def _list(self, nv: Any, index: int, h: Any, seen: dict[int, dict], instance: tuple | None) -> bool:
        """Add the compute and graphics processes of handle ``h`` to ``seen``; False if NVML refused both."""
        answered = False
        for kind, fn in (("C", "nvmlDeviceGetComputeRunningProcesses"),
                         ("G", "nvmlDeviceGetGraphicsRunningProcesses")):
            listed = _try(getattr(nv, fn, None), h)
            if listed is None:
                continue
            answered = True
            for pr in listed:
                pid = _int(getattr(pr, "pid", None))
                if pid is None:
                    continue
                row = seen.get(pid)
                if row is not None:  # in both lists
                    if row["type"] != kind:
                        row["type"] = "C+G"
                    continue
                gi, ci = _int(getattr(pr, "gpuInstanceId", None)), _int(getattr(pr, "computeInstanceId", None))
                if instance is not None and gi in (None, _NA):
                    gi, ci = instance
                seen[pid] = {"gpu": index, "pid": pid, "type": kind,
                             "used_memory_bytes": _int(getattr(pr, "usedGpuMemory", None)),
                             "gi": None if gi in (None, _NA) or gi > 1024 else gi,
                             "ci": None if ci in (None, _NA) or ci > 1024 else ci}
        return answered

    def _process_util(self, nv: Any, index: int, h: Any, rows: dict[int, dict]) -> None:
        """SM and memory % per process since the last call (NotSupported on many GPUs)."""
        fn = getattr(nv, "nvmlDeviceGetProcessUtilization", None)
        samples = _try(fn, h, self._util_ts.get(index, 0))
        if not samples:
            return
        newest: dict[int, Any] = {}
        for s in samples:
            pid = _int(getattr(s, "pid", None))
            ts = _int(getattr(s, "timeStamp", None)) or 0
            if pid in rows and (pid not in newest or ts >= newest[pid][0]):
                newest[pid] = (ts, s)
            self._util_ts[index] = max(self._util_ts.get(index, 0), ts)
        for pid, (_, s) in newest.items():
            rows[pid]["sm_percent"] = _pct(getattr(s, "smUtil", None))
            rows[pid]["mem_percent"] = _pct(getattr(s, "memUtil", None))

    def _mig(self, nv: Any, index: int, h: Any) -> list[tuple[p.MigInstance, Any]]:
        mode = _try(getattr(nv, "nvmlDeviceGetMigMode", None), h)
        if not mode or mode[0] != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
            return []
        out = []
        for i in range(min(_int(_try(nv.nvmlDeviceGetMaxMigDeviceCount, h)) or 0, 64)):
            mh = _try(nv.nvmlDeviceGetMigDeviceHandleByIndex, h, i)
            if mh is None:
                continue
            gi = _int(_try(nv.nvmlDeviceGetGpuInstanceId, mh))
            if gi is None or gi > 1024:
                continue
            ci = _int(_try(getattr(nv, "nvmlDeviceGetComputeInstanceId", None), mh))
            mem = _try(nv.nvmlDeviceGetMemoryInfo, mh)
            name = _s(_try(nv.nvmlDeviceGetName, mh) or "")
            out.append((p.MigInstance(
                gpu=index, gi=gi, ci=ci if ci is not None and ci <= 1024 else None,
                profile=_clean(name.rsplit(" MIG ", 1)[-1] if " MIG " in name else name, 64),
                uuid=_clean(_s(_try(nv.nvmlDeviceGetUUID, mh) or ""), 128),
                mem_used_bytes=_int(getattr(mem, "used", None)), mem_total_bytes=_int(getattr(mem, "total", None))),
                mh))
        return out

    # ------------------------------------------------------------ nvidia-smi

    def _smi(self) -> list[dict]:
        try:
            _, text = self._run(APPS_ARGV, self.timeout_s)
        except (subprocess.TimeoutExpired, OSError) as e:
            self.reason = f"nvidia-smi --query-compute-apps: {e}"
            return []
        by_uuid = {r.uuid: r.index for r in self.gpu.last if r.uuid}
        by_bus = {r.extra.get("pci.bus_id", "").upper(): r.index for r in self.gpu.last}
        only = self.gpu.last[0].index if len(self.gpu.last) == 1 else None
        out = []
        for row in parse_compute_apps(text):
            gpu = by_uuid.get(row.gpu_uuid, by_bus.get(row.gpu_bus_id.upper()) if row.gpu_bus_id else None)
            gpu = only if gpu is None else gpu
            if gpu is None:
                continue
            out.append({"gpu": gpu, "pid": row.pid, "type": "C", "name": row.process_name,
                        "used_memory_bytes": None if row.used_memory_bytes is None else int(row.used_memory_bytes)})
        return out

    # ------------------------------------------------------------ common

    def _finish(self, now: float, procs: list[dict], mig: list[p.MigInstance], source: str) -> p.GpuProcesses:
        procs.sort(key=lambda r: -(r.get("used_memory_bytes") or 0))
        kept, omitted = procs[: self.max_processes], max(0, len(procs) - self.max_processes)
        out = []
        for r in kept:
            pid = r["pid"]
            command = self.resolver.command(pid) or _clean(r.pop("name", ""), MAX_COMMAND)
            r.pop("name", None)
            out.append(p.GpuProcess(user=self.resolver.user(pid), command=command, **r))
        return p.GpuProcesses(ts=now, processes=out, mig=mig[:448], omitted=omitted, source=source)


def _try(fn: Callable[..., Any] | None, *args: Any) -> Any:
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported / NotFound / NoPermission ...
        return None


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 1 << 53:
        return None
    return v


def _pct(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and 0 <= v <= 100 else None


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


__all__ = ["GpuProcessCollector", "ProcResolver"]
