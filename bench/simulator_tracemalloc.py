"""Where a simulated machine's memory goes: tracemalloc of N machines in this process.

A real ``centrality server`` (SQLite, per-source limits off) in a subprocess; the
simulated fleet (``agent_runtime.simulate``, mixed profile, 1 Hz samples, 5 s
batches, ``FleetSpec.handshakes`` as the CLI's default) in this process, traced.
Three points: the fleet built (agents, collectors, keys), all N registered, and
``--settle`` seconds later. Per machine: the traced bytes between points / N, by
source file, plus the asyncio objects alive per machine (tasks, futures, timer
handles) and the process's RSS. The bench for the user-visible figure (RSS / N of
``centrality simulate``) is ``bench/simulator_memory.py``; this one says where.

    python -m bench.simulator_tracemalloc --agents 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import time
import tracemalloc
from collections import Counter

import psutil

from .fleet import Env, free_port, start_server


def asyncio_objects() -> Counter:
    kinds = (asyncio.Task, asyncio.Future, asyncio.TimerHandle, asyncio.Handle, asyncio.Event)
    counts: Counter = Counter()
    for obj in gc.get_objects():
        for k in kinds:
            if isinstance(obj, k):
                counts[k.__name__] += 1
                break
    return counts


def by_file(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int,
            key: str = "filename") -> list[str]:
    stats = after.compare_to(before, key)
    lines = []
    for s in stats[:top]:
        frame = s.traceback[0]
        short = "/".join(frame.filename.split("/")[-2:]) + (f":{frame.lineno}" if key == "lineno" else "")
        lines.append(f"  {s.size_diff / n / 1024:7.2f} KB  {s.count_diff / n:7.1f} blocks  {short}")
    return lines


async def measure(n: int, join: str, root, settle: float, handshakes: int, top: int) -> None:
    from agent_runtime.simulate import FleetSpec, SimulatedFleet, StateDir

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = _snapshot()
    spec = FleetSpec(count=n, profile="mixed", ramp=max(5.0, n / 200), handshakes=handshakes)
    fleet = SimulatedFleet(spec, StateDir(root / "sim"), join)
    fleet.build()
    gc.collect()
    t1 = _snapshot()
    rss1 = proc.memory_info().rss
    base = asyncio_objects()
    stop = asyncio.Event()
    runner = asyncio.ensure_future(fleet.run(stop))
    started = time.monotonic()
    peak = 0
    while fleet.live < n:
        await asyncio.sleep(1)
        peak = max(peak, sum(a.outbox.samples for a in fleet.agents))
        if runner.done():
            runner.result()
    joined = time.monotonic() - started
    gc.collect()
    t2 = _snapshot()
    await asyncio.sleep(settle)
    gc.collect()
    t3 = _snapshot()
    rss3 = proc.memory_info().rss
    trimmed = _malloc_trim()
    rss4 = proc.memory_info().rss
    objs = asyncio_objects() - base
    print(f"{n} machines, all live after {joined:.1f} s (handshakes {handshakes}); "
          f"outbox peak {peak / n:.1f} samples a machine")
    if t0 is not None:
        print(f"traced per machine: built {_diff(t0, t1) / n / 1024:.1f} KB, +live {_diff(t1, t2) / n / 1024:.1f} KB, "
              f"after {settle:g} s settle {_diff(t1, t3) / n / 1024:.1f} KB over built "
              f"(total {_diff(t0, t3) / n / 1024:.1f} KB)")
    print(f"RSS before building {rss0 / 2**20:.0f} MB; per machine: built {(rss1 - rss0) / n / 1024:.1f} KB, settled {(rss3 - rss0) / n / 1024:.1f} KB "
          f"(process {rss3 / 2**20:.0f} MB); after malloc_trim {(rss4 - rss0) / n / 1024:.1f} KB"
          f"{'' if trimmed else ' (no malloc_trim here)'}")
    print("asyncio objects per machine (settled): " + ", ".join(
        f"{k} {v / n:.2f}" for k, v in sorted(objs.items())))
    if t0 is not None:
        print("built, by file:")
        print("\n".join(by_file(t0, t1, n, top)))
        print("settled over built, by file:")
        print("\n".join(by_file(t1, t3, n, top)))
        print("settled over built, by line:")
        print("\n".join(by_file(t1, t3, n, 2 * top, "lineno")))
    stop.set()
    await runner


def _snapshot() -> tracemalloc.Snapshot | None:
    return tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None


def _malloc_trim() -> bool:
    """Give the allocator's free pages back (glibc), to tell a high-water mark from live memory."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _diff(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot) -> int:
    return sum(s.size_diff for s in b.compare_to(a, "filename"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=300)
    ap.add_argument("--settle", type=float, default=30, help="seconds after all are live")
    ap.add_argument("--handshakes", type=int, default=64)
    ap.add_argument("--no-trace", action="store_true", help="RSS only (tracemalloc's own memory left out)")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    env = Env()
    for k, v in env.env.items():  # the simulator in this process reads the same settings
        os.environ.setdefault(k, v)
    server = start_server(env, free_port())
    try:
        join = env.cli("token", "create", "--uses", str(args.agents), "--ttl", "2h").stdout.strip()
        if not args.no_trace:
            tracemalloc.start(1)
        asyncio.run(measure(args.agents, join, env.root, args.settle, args.handshakes, args.top))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


if __name__ == "__main__":
    main()
