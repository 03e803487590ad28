"""Fake collectors for simulating fleets: cheap, deterministic, plausible.

Profiles:

* ``cpu``: 16 cores, 64 GiB, filesystems / and /data on nvme0n1/nvme1n1,
  NICs eth0/eth1; a load that wanders (two slow sine waves plus noise).
* ``gpu8``: 8x "NVIDIA H100 80GB HBM3", 2 TiB RAM, 112 cores. GPUs 0..k-1
  follow the main training job, repeating every 10-20 minutes: ramp up,
  plateau at 95-100 % util with ~70 GiB/GPU, periodic checkpoint dips (util
  drops, disk writes surge), then idle. The other GPUs run a second job with
  its own cycle, a notebook holding memory at 0 %, or nothing (see
  ``fake_jobs``). Also a ``nvidia_smi`` screen text every 30 s and the jobs'
  processes (``gpu_processes``) every 5 s.

Values come at the precision a real machine reports (``centrality_core.precision``:
whole bytes, per-core CPU in whole percent, GPU power to 0.01 W, ...), not as
15-digit floats. Every value is a pure function of (profile, index, seed, int(now)): two
simulators with the same seed agree whatever order they sample in. Keys,
units and ranges are those of the real collectors (percent in [0, 100]).
Per sample only one list and one dict are built; key tuples and noise tables
are shared between machines of the same shape.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from operator import mul, truediv

from centrality_core.precision import digits

from .fake_jobs import make_jobs
from .fake_screen import ScreenGpu, ScreenProcess, render_screen

GIB = 1 << 30
MIB = 1 << 20
TAU = 2 * math.pi
_ROWS = 256  # noise table rows, picked per second by a hash of the time (see _row)
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: the row depends on every bit of the second
H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MIB = 81559
_H100_BUS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
PROFILES = ("cpu", "gpu8")
_H100_BYTES = float(H100_MIB * MIB)
_IDLE_MEM = 1.0 * MIB
#: gpu8 host activity per training phase: (cpu load 0-1, RAM fraction, disk/net activity factor).
_HOST = {"train": (0.45, 0.3, 3.0), "checkpoint": (0.12, 0.3, 0.5), "idle": (0.02, 0.02, 0.05)}


@lru_cache(maxsize=None)
def _noise(width: int, spread: float) -> tuple[tuple[float, ...], ...]:
    """Shared table: ``_ROWS`` rows of ``width`` offsets uniform in [-spread, spread]."""
    rng = random.Random(f"noise:{width}:{spread}")
    return tuple(tuple(rng.uniform(-spread, spread) for _ in range(width)) for _ in range(_ROWS))


@lru_cache(maxsize=None)
def _whole_noise(width: int, spread: float) -> tuple[tuple[float, ...], ...]:
    """``_noise`` rounded to whole numbers: per-core percentages are kept whole (``digits``),
    so a core's value is a whole load plus a whole offset, exact without rounding each one."""
    return tuple(tuple(float(round(v)) for v in row) for row in _noise(width, spread))


@lru_cache(maxsize=None)
def _row_bounds(width: int, spread: float) -> tuple[tuple[float, float, float], ...]:
    """(min, max, mean) of each row of ``_whole_noise(width, spread)``."""
    return tuple((min(r), max(r), sum(r) / width) for r in _whole_noise(width, spread))


@lru_cache(maxsize=None)
def _keys(ncores: int, mounts: tuple[str, ...], disks: tuple[str, ...], nics: tuple[str, ...],
          ngpus: int) -> tuple[str, ...]:
    """Sample keys, in the order ``FakeCollectors._values`` fills them."""
    k = ["cpu.percent", *(f"cpu[{i}].percent" for i in range(ncores)),
         "mem.used_bytes", "mem.total_bytes", "mem.percent"]
    for m in mounts:
        k += [f"fs[{m}].used_bytes", f"fs[{m}].total_bytes", f"fs[{m}].percent"]
    for d in disks:
        k += [f"disk[{d}].{f}" for f in ("read_iops", "write_iops", "read_bytes_per_s", "write_bytes_per_s")]
    for n in nics:
        k += [f"net[{n}].recv_bytes_per_s", f"net[{n}].sent_bytes_per_s"]
    for g in range(ngpus):
        k += [f"gpu[{g}].{f}" for f in ("util_percent", "mem_used_bytes", "mem_total_bytes",
                                        "mem_util_percent", "temp_c", "power_w")]
    return tuple(k)


@lru_cache(maxsize=None)
def _scales(keys: tuple[str, ...]) -> tuple[float, ...]:
    """10 ** digits per key (every fake key has a precision rule): a value is kept as
    ``round(v * scale) / scale``, as the store rounds it (and ~10x cheaper than
    ``round(v, digits)``)."""
    return tuple(10.0 ** digits(k) for k in keys)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class FakeCollectors:
    """One simulated machine: ``sample(now)`` and ``machine_info()`` like the real ones."""

    def __init__(self, profile: str = "cpu", index: int = 0, seed: int = 0) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown fake profile {profile!r} (expected one of {PROFILES})")
        self.profile = profile
        rng = random.Random(f"{profile}:{index}:{seed}")  # str seeds are stable across runs
        self.gpu = profile == "gpu8"
        self.ncores = 112 if self.gpu else 16
        self.mem_total = (2048 if self.gpu else 64) * GIB
        if self.gpu:
            self.mounts = (("/", "/dev/md0", "ext4", int(1.74e12)), ("/raid", "/dev/md1", "ext4", int(27.9e12)))
            self.disks = tuple(f"nvme{i}n1" for i in range(10))  # 2 OS (md0) + 8 data (md1)
        else:
            self.mounts = (("/", "/dev/nvme0n1p2", "ext4", int(rng.choice((0.48e12, 0.95e12)))),
                           ("/data", "/dev/nvme1n1", "xfs", int(rng.choice((1.9e12, 3.8e12)))))
            self.disks = ("nvme0n1", "nvme1n1")
        self.nics = ("eth0", "eth1")
        self.ngpus = 8 if self.gpu else 0
        self.keys = _keys(self.ncores, tuple(m[0] for m in self.mounts), self.disks, self.nics, self.ngpus)
        self._scales = _scales(self.keys)
        #: The scales of the values after the cores (the cores' are whole by construction).
        self._rest_scales = self._scales[self.ncores + 1:]
        self.info = self._make_info(rng, index)
        # dynamics, all from the same seeded stream
        self._shift = rng.randrange(1 << 32)
        self._base = rng.uniform(0.15, 0.45)
        self._waves = tuple((rng.uniform(a, b), TAU / rng.uniform(p, q), rng.uniform(0, TAU))
                            for a, b, p, q in ((0.1, 0.25, 600, 3600), (0.04, 0.12, 60, 300)))
        self._fs_used = tuple(rng.uniform(0.2, 0.7) for _ in self.mounts)
        self._mem_frac = rng.uniform(0.25, 0.55)
        self._disk_iops = tuple(rng.uniform(50, 800) for _ in self.disks)
        self._nic_bps = tuple(rng.uniform(2e5, 5e7) for _ in self.nics)
        self._period = rng.uniform(600, 1200)
        self._offset = rng.uniform(0, self._period)
        self._job_end = self._period * rng.uniform(0.65, 0.85)
        self._ramp = rng.uniform(45, 90)
        self._ckpt_every = rng.uniform(150, 300)
        self._ckpt_len = rng.uniform(15, 30)
        self._gpu_mem_off = tuple(rng.uniform(-1.5, 1.5) * GIB for _ in range(self.ngpus))
        self._core_noise = _whole_noise(self.ncores, 12.0)  # shared tables: only references here
        self._core_bounds = _row_bounds(self.ncores, 12.0)
        self._jitter = _noise(16, 0.5)
        self._gpu_noise = _noise(self.ngpus, 1.5) if self.gpu else ()
        self._screen_slot: int | None = None
        self.screen_interval_s = 30.0
        self._jobs, self._gpu_job = make_jobs(rng, self.ngpus, {
            "period": self._period, "offset": self._offset, "ramp": self._ramp, "end": self._job_end,
            "ckpt_every": self._ckpt_every, "ckpt_len": self._ckpt_len}) if self.gpu else ((), ())
        self._procs_slot: int | None = None
        self.procs_interval_s = 5.0

    # ------------------------------------------------------------ info

    def _make_info(self, rng: random.Random, index: int) -> dict:
        osname, kernel = rng.choice((("Ubuntu 22.04.5 LTS", "5.15.0-124-generic"),
                                     ("Ubuntu 24.04.1 LTS", "6.8.0-48-generic"),
                                     ("Rocky Linux 9.4 (Blue Onyx)", "5.14.0-427.13.1.el9_4.x86_64")))
        info = {
            "hostname": f"{'gpu' if self.gpu else 'cpu'}-{index:05d}",
            "machine_id": f"{rng.getrandbits(128):032x}",
            "os": osname, "kernel": kernel, "arch": "x86_64",
            "cpu_model": "Intel(R) Xeon(R) Platinum 8480C" if self.gpu else
            rng.choice(("AMD EPYC 4464P 12-Core Processor", "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz")),
            "cpu_count": self.ncores,
            "memory_total_bytes": self.mem_total,
            "disks": [{"mount": m, "device": d, "fstype": t, "total_bytes": s} for m, d, t, s in self.mounts],
            "gpus": [], "gpu_driver": "",
        }
        if self.gpu:
            info["gpus"] = [{"index": i, "name": H100_NAME, "uuid": _uuid(rng), "memory_total_bytes": H100_MIB * MIB}
                            for i in range(self.ngpus)]
            info["gpu_driver"] = rng.choice(("550.127.05", "565.57.01"))
        return info

    def machine_info(self) -> dict:
        """What this simulated machine is (a fresh copy each call)."""
        return {**self.info, "disks": [dict(d) for d in self.info["disks"]],
                "gpus": [dict(g) for g in self.info["gpus"]]}

    # ------------------------------------------------------------ dynamics

    def phase(self, now: float) -> tuple[str, float]:
        """gpu8 training phase at ``now``: ("ramp", fraction done) | ("train"|"checkpoint"|"idle", 1|0)."""
        u = (now + self._offset) % self._period
        if u < self._ramp:
            return "ramp", u / self._ramp
        if u < self._job_end:
            v = (u - self._ramp) % self._ckpt_every
            return ("checkpoint" if v > self._ckpt_every - self._ckpt_len else "train"), 1.0
        return "idle", 0.0

    def _load(self, now: float) -> float:
        x = self._base
        for amp, w, ph in self._waves:
            x += amp * math.sin(w * now + ph)
        return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)

    def _values(self, now: float) -> list[float]:
        # A hash, not (second % _ROWS): noise that repeated every 256 s would let
        # long compressed chunks find it again, which real noise never does.
        row = ((int(now) + self._shift) * _MIX & 0xFFFFFFFFFFFFFFFF) * _ROWS >> 64
        core_off = self._core_noise[row]
        jit = self._jitter[row]  # misc jitter in [-0.5, 0.5]
        if self.gpu:
            phase, frac = self.phase(now)
            if phase == "ramp":
                load, mem_frac, disk_act = 0.1 + 0.3 * frac, 0.05 + 0.25 * frac, 1.0
            else:
                load, mem_frac, disk_act = _HOST[phase]
        else:
            phase, frac = "", 0.0
            load = self._load(now)
            mem_frac = self._mem_frac + 0.2 * load
            disk_act = 0.2 + load
        pct = float(round(100.0 * load))  # whole, as the cores' offsets: their sums are exact
        lo, hi, mean = self._core_bounds[row]
        if 0.0 <= pct + lo and pct + hi <= 100.0:  # no core to clamp: no Python loop per core
            vals = [pct + mean, *map(pct.__add__, core_off)]
        else:
            cores = [v if 0.0 <= v <= 100.0 else (0.0 if v < 0.0 else 100.0) for v in map(pct.__add__, core_off)]
            vals = [sum(cores) / self.ncores, *cores]
        # Memory and filesystems move slowly (a wave) plus a little jitter, as real ones
        # do; not by gigabytes from one second to the next. /proc/meminfo counts kB,
        # statvfs 4 KiB blocks.
        slow = math.sin(now / 900.0 + self._offset)
        mem_used = float(int(self.mem_total * mem_frac * (1.0 + 0.02 * slow) + jit[0] * 64 * MIB) & ~1023)
        vals += (mem_used, float(self.mem_total), 100.0 * mem_used / self.mem_total)
        for (_, _, _, total), used in zip(self.mounts, self._fs_used):
            u = float(int(total * (used + 0.0005 * slow) + jit[1] * 8 * MIB) & ~4095)
            vals += (u, float(total), 100.0 * u / total)
        ckpt = phase == "checkpoint"
        for i, iops in enumerate(self._disk_iops):
            # whole operations, bytes in whole 512-byte sectors (~128 KiB a read, 64 KiB / 1 MiB a write)
            r = float(int(iops * disk_act * (1.0 + jit[2 + (i & 3)])))
            w = float(int(iops * (6.0 if ckpt else 0.3 * disk_act) * (1.0 + jit[6 + (i & 3)])))
            vals += (r, w, 512.0 * int(r * 256.0 * (1.0 + 0.2 * jit[14])),
                     512.0 * int(w * (2048.0 if ckpt else 128.0) * (1.0 + 0.2 * jit[15])))
        for i, bps in enumerate(self._nic_bps):
            vals += (bps * disk_act * (1.0 + jit[10 + i]), bps * (20.0 if ckpt else 0.3 * disk_act) * (1.0 + jit[12 + i]))
        if self.gpu:
            self._gpu_values(vals, now, phase, frac, self._gpu_noise[row])
        return vals

    def _gpu_states(self, now: float, phase: str, frac: float, off: tuple[float, ...]) -> list[tuple]:
        """(util %, memory bytes, noise) of each GPU at ``now`` (``phase``: the main job's)."""
        jobs, mem_off = self._jobs, self._gpu_mem_off
        phases = [(phase, frac), *(job.phase(now) for job in jobs[1:])]
        out = []
        for g, j in enumerate(self._gpu_job):
            o = off[g]
            ph = phases[j][0] if j >= 0 else "idle"
            if ph == "idle":
                out.append((0.0, _IDLE_MEM, o))
                continue
            job = jobs[j]
            if ph == "train":  # the common case, inline
                util, mem = job.util + o, job.mem + mem_off[g]
            else:
                util, mem = job.gpu(ph, phases[j][1], o, mem_off[g])
            out.append(((0.0 if util < 0.0 else (100.0 if util > 100.0 else util)), mem, o))
        return out

    def _gpu_values(self, vals: list[float], now: float, phase: str, frac: float, off: tuple[float, ...]) -> None:
        """Append each GPU's six values (``_gpu_states`` inlined: this runs every sample)."""
        jobs, mem_off, total = self._jobs, self._gpu_mem_off, _H100_BYTES
        phases = [(phase, frac), *(job.phase(now) for job in jobs[1:])] if len(jobs) > 1 else [(phase, frac)]
        for g, j in enumerate(self._gpu_job):
            o = off[g]
            ph = phases[j][0] if j >= 0 else "idle"
            if ph == "idle":
                util, mem = 0.0, _IDLE_MEM
            else:
                job = jobs[j]
                if ph == "train":
                    util, mem = job.util + o, job.mem + mem_off[g]
                else:
                    util, mem = job.gpu(ph, phases[j][1], o, mem_off[g])
                util = 0.0 if util < 0.0 else (100.0 if util > 100.0 else util)
                mem = float(int(mem) & ~(MIB - 1))  # the driver allocates whole MiB
            power = 75.0 + 6.1 * util + 4.0 * o
            vals += (util, mem, total, 100.0 * mem / total, 29.0 + 0.42 * util + 0.6 * o,
                     700.0 if power > 700.0 else power)

    # ------------------------------------------------------------ API

    def sample(self, now: float) -> tuple[dict[str, float], dict[str, str]]:
        """``(values, text)`` at ``now`` (Unix seconds). ``text`` carries ``nvidia_smi``
        (gpu8 only) once per ``screen_interval_s``, else is empty."""
        vals, scale, n = self._values(now), self._scales[0], self.ncores + 1
        # At each key's precision (the store's rounding, ``round(v * scale) / scale``), the
        # per-core values excepted: whole already. C-level maps, not a Python loop a value:
        # sampling is most of what a simulator of thousands of machines does.
        vals[0] = round(vals[0] * scale) / scale
        rest = self._rest_scales
        vals[n:] = map(truediv, map(round, map(mul, vals[n:], rest)), rest)
        values = dict(zip(self.keys, vals))
        if not self.gpu:
            return values, {}
        slot = int(now // self.screen_interval_s)
        if slot == self._screen_slot:
            return values, {}
        self._screen_slot = slot
        return values, {"nvidia_smi": self.screen(now, values)}

    def gpu_processes(self, now: float):
        """The jobs' processes (``protocol.GpuProcesses``) once per ``procs_interval_s``, else None."""
        if not self.gpu:
            return None
        slot = int(now // self.procs_interval_s)
        if slot == self._procs_slot:
            return None
        self._procs_slot = slot
        return self.processes_at(now)

    def processes_at(self, now: float):
        """The jobs' processes at ``now`` as a ``protocol.GpuProcesses`` (no cadence)."""
        from centrality_core import protocol as p

        return p.GpuProcesses(ts=now, source="simulated", processes=[
            p.GpuProcess(gpu=g, pid=pid, user=user, command=cmd, used_memory_bytes=used, sm_percent=sm)
            for g, pid, user, cmd, used, sm in self._processes(now)])

    def _processes(self, now: float) -> list[tuple[int, int, str, str, int, float]]:
        """(gpu, pid, user, command, used bytes, SM %) of every process running at ``now``."""
        phase, frac = self.phase(now)
        states = self._gpu_states(now, phase, frac, self._gpu_noise[(int(now) + self._shift) % _ROWS])
        out = []
        for job in self._jobs:
            if job.phase(now)[0] == "idle":
                continue
            for rank, g in enumerate(job.gpus):
                util, mem, _ = states[g]
                out.append((g, job.pid(now, rank), job.user, job.command, max(0, int(mem) - 520 * MIB), round(util, 1)))
        return out

    def screen(self, now: float, values: dict[str, float] | None = None) -> str:
        """The fake ``nvidia-smi`` screen for ``now``, consistent with ``sample(now)``."""
        v = values if values is not None else dict(zip(self.keys, self._values(now)))
        gpus = []
        for g in range(self.ngpus):
            p = f"gpu[{g}]."
            used = int(v[p + "mem_used_bytes"] // MIB)
            gpus.append(ScreenGpu(g, H100_NAME, f"00000000:{_H100_BUS[g]}:00.0", round(v[p + "temp_c"]),
                                  round(v[p + "power_w"]), 700, used, H100_MIB, round(v[p + "util_percent"])))
        procs = [ScreenProcess(g, pid, cmd.split()[0], used // MIB) for g, pid, _, cmd, used, _ in self._processes(now)]
        return render_screen(gpus, procs, driver=self.info["gpu_driver"], cuda="12.7" if
                             self.info["gpu_driver"].startswith("565") else "12.4", now=now)


def fake_machine_info(profile: str, index: int, seed: int = 0) -> dict:
    """Machine info of simulated machine ``index`` (distinct hostname, id, disks, GPU UUIDs)."""
    return FakeCollectors(profile, index, seed).machine_info()
