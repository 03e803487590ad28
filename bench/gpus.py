"""What the GPU process lists cost: bytes on the wire, agent time, `gpus` rows.

* a simulated gpu8 batch (5 samples) with and without its process list, and
  one of 256 processes with 256-character commands (the bound);
* the agent's time to make a process list (simulated, and resolving real
  pids in this machine's /proc), and a simulated gpu8 sample (its GPUs now
  follow several jobs);
* the control plane's time to build the `gpus` rows of N machines of 8 GPUs.

    python -m bench.gpus [--machines 10000]
"""

from __future__ import annotations

import argparse
import os
import time

from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.collectors.gpu_procs import ProcResolver
from agent_runtime.sampler import columnar
from centrality_core import gpus
from centrality_core import protocol as p


def _per_call(fn, n: int) -> float:
    """CPU seconds per call (the machine may be shared: wall time would say more about the others)."""
    t = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=10_000)
    args = ap.parse_args()
    f = FakeCollectors("gpu8", 7, 0)
    t0 = 1_800_000_000.0
    t = next(t0 + s for s in range(0, 3600, 5) if len(f.processes_at(t0 + s).processes) >= 6)
    rows = [f.sample(t + i)[0] for i in range(5)]
    plain = columnar("s", 1, [t + i for i in range(5)], rows, packed=True)
    with_procs = columnar("s", 1, [t + i for i in range(5)], rows, packed=True)
    with_procs.gpu_processes = f.processes_at(t + 4)
    full = p.GpuProcesses(ts=t, source="nvml", processes=[
        p.GpuProcess(gpu=i % 8, pid=100000 + i, user="u" * 12, command="c" * 256, used_memory_bytes=1 << 34,
                     sm_percent=50.0, mem_percent=20.0) for i in range(p.MAX_GPU_PROCESSES)])
    print(f"gpu8 batch, 5 samples, packed: {len(p.encode(plain))} B; with its process list "
          f"({len(with_procs.gpu_processes.processes)} processes): {len(p.encode(with_procs))} B; "
          f"a list at the bound (256 x 256-char commands): {len(p.encode(p.MetricsBatch(stream='s', seq=1, ts=[t], keys=[], gpu_processes=full)))} B")
    print(f"simulated process list: {_per_call(lambda i: f.processes_at(t + 5 * i), 2000) * 1e6:.0f} us per call")
    fleet = [FakeCollectors("gpu8", i, 0) for i in range(100)]
    per = min(_per_call(lambda i: fleet[i % 100]._values(t + 100 * rep + i // 100), 2000) for rep in range(5))
    print(f"simulated gpu8 sample values: {per * 1e6:.1f} us")
    r = ProcResolver()
    pids = [int(d) for d in os.listdir("/proc") if d.isdigit()][:256]
    per = _per_call(lambda i: [(r.user(pid), r.command(pid)) for pid in pids], 20)
    print(f"/proc user+command of {len(pids)} real pids: {per * 1e3:.1f} ms per list")
    values = {k: v for k, v in rows[-1].items() if k.startswith("gpu[")}  # what the request passes
    inv = f.machine_info()["gpus"]
    procs = f.processes_at(t).processes
    start = time.process_time()
    n = 0
    for i in range(args.machines):
        n += len(gpus.gpu_rows(f"gpu-{i:05d}", "live", values, inv, procs))
    print(f"gpus rows for {args.machines} machines ({n} GPUs): {time.process_time() - start:.2f} s CPU")


if __name__ == "__main__":
    main()
