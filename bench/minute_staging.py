"""A closed minute staged as JSON (earlier versions) beside its staged form, in one run.

Three costs of a minute on its way to the minute tier, in CPU time of this process
(minimum of ``--reps``):

1. building the row when the minute closes (on the event loop): the ``{key: [min,
   max, sum, count]}`` dict earlier versions built, against the arrays
   (``Minute.stats``), for a GPU node's minute (``--keys`` keys, 12 batches of 5
   samples);
2. encoding it in the writer: JSON against ``staged.encode_minute``;
3. compacting a simulated fleet's hour of minutes (SQLite; 1 in 4 a GPU node) into
   tier-1 chunks: rows stored as JSON against rows in the staged form, per stored
   raw batch (12 per minute) so that it adds to ``bench/storage.py``'s figures.

    python -m bench.minute_staging --machines 8
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import timeit

import msgspec
import numpy as np
import sqlalchemy as sa

from centrality_core.runtime import tune_malloc
from control_plane.rollups import Rollups
from control_plane.store import Store, staged
from control_plane.store.chunks import Chunks
from control_plane.store.models import MetricRollupRow

from . import report
from .storage_format import simulate


def gpu_minute(keys: int):
    names = [f"gpu[{i % 8}].key{i}" for i in range(keys)]
    r = Rollups()
    t0 = 1_800_000_000.0
    rng = np.random.default_rng(1)
    for b in range(12):
        r.add("m", [t0 + 5 * b + j for j in range(5)], names, np.round(rng.random((keys, 5)) * 100, 1))
    (minute,) = r.buckets.values()
    return minute


def dict_of(minute) -> dict[str, list]:
    """The row as earlier versions built it from the minute's arrays (every key had values)."""
    columns = zip(minute.mins.tolist(), minute.maxs.tolist(), minute.sums.tolist(), minute.counts.tolist())
    return dict(zip(minute.keys, map(list, columns)))


def best(fn, reps: int, number: int) -> float:
    """Seconds of CPU per call, the minimum over ``reps`` rounds."""
    return min(timeit.Timer(fn, timer=time.process_time).repeat(reps, number)) / number


def compaction(machines, form: str, now: float, reps: int) -> float:
    """CPU seconds to compact the fleet's minutes stored in ``form`` (``json``, ``staged``)."""
    rows = [{"machine_id": f"{i:032x}", "minute": x["minute"],
             "payload": msgspec.json.encode(x["stats"]) if form == "json"
             else staged.encode_minute(staged.KeyStats.of(x["stats"]))}
            for i, m in enumerate(machines) for x in m.minutes]
    spent = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="centrality-bench-minutes-") as scratch:
            store = Store(f"sqlite:///{scratch}/m.db")
            store.migrate()
            with store.engine.begin() as conn:
                conn.execute(sa.insert(MetricRollupRow.__table__), rows)
            chunks = Chunks(store)
            t = time.process_time()
            while chunks.compact_minutes(now)["chunks"]:
                pass
            spent.append(time.process_time() - t)
            store.close()
    return min(spent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=8, help="simulated machines (1 in 4 a GPU node)")
    ap.add_argument("--keys", type=int, default=214, help="keys of the GPU node's minute (parts 1 and 2)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tune_malloc()  # as `centrality server` runs
    minute = gpu_minute(args.keys)
    stats = minute.stats()
    as_dict = stats.as_dict()
    assert dict_of(minute) == as_dict  # the two forms hold the same minute
    build = {"json": best(lambda: dict_of(minute), args.reps, 2000), "staged": best(minute.stats, args.reps, 2000)}
    encode = {"json": best(lambda: msgspec.json.encode(as_dict), args.reps, 2000),
              "staged": best(lambda: staged.encode_minute(stats), args.reps, 2000)}
    now = time.time()
    start = now - 3600 - (now - 3600) % 3600 - 3600  # a whole closed hour
    machines = [simulate(f"m{i:04d}", "gpu8" if i % 4 == 3 else "cpu", i, start, 3600)
                for i in range(args.machines)]
    batches = sum(len(m.frames) for m in machines)
    compact = {form: compaction(machines, form, now + 3600, args.reps) / batches for form in ("json", "staged")}
    results = {"keys": args.keys, "machines": args.machines, "batches": batches,
               "build_us": {k: round(v * 1e6, 1) for k, v in build.items()},
               "encode_us": {k: round(v * 1e6, 1) for k, v in encode.items()},
               "compact_us_per_batch": {k: round(v * 1e6, 1) for k, v in compact.items()},
               "bytes": {"json": len(msgspec.json.encode(as_dict)), "staged": len(staged.encode_minute(stats))}}
    md = "\n".join([
        "## A closed minute staged: JSON beside arrays (`bench/minute_staging.py`)",
        "",
        f"A GPU node's minute of {args.keys} keys (12 batches of 5 samples), and the minute tier's compaction "
        f"of {args.machines} simulated machines' hour on SQLite (1 in 4 a GPU node; per stored raw batch, "
        "12 a minute, so that it adds to the storage bench's compaction figure). CPU time of this process, "
        f"minimum of {args.reps}. JSON is how earlier versions staged a minute (its dict built from the "
        "minute's arrays as they did it); rows of that form are still read.",
        "",
        "| form | build the row (event loop) | encode (writer) | row bytes | compaction, per stored batch |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {form} | {results['build_us'][form]} us | {results['encode_us'][form]} us | "
          f"{results['bytes'][form]:,} | {results['compact_us_per_batch'][form]} us |" for form in ("json", "staged")),
    ])
    command = "python -m bench.minute_staging " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("minute_staging", command.strip(), results, md)


if __name__ == "__main__":
    main()
