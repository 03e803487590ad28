"""The exporter's own work for one scrape, apart from the box's load: CPU time.

Builds the ``subscribe --values`` snapshot a control plane would send for N
machines of the simulator's mixed profile (``FakeCollectors``: 1 in 4 has 8
GPUs; the simulator's two labels), with the control plane's own packing
(``control_plane/shapes.py``), then measures, in CPU seconds of this process:
decoding and applying it (``FleetState``), one collect (the Collector), one
whole exposition (prometheus_client's ``generate_latest``: collect + format)
and gzip at the exporter's level. Medians of ``--reps``.

    python -m bench.export_render --machines 1000 --machines 10000
"""

from __future__ import annotations

import argparse
import gzip
import shlex
import statistics
import sys
import time

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.simulate import profile_of
from control_plane.shapes import ShapeTable, add_values
from exporter.collector import FleetCollector, LinkStats, ScrapeStats
from exporter.fleet import FleetState
from exporter.serve import GZIP_LEVEL

from . import report


class _Latest:
    def __init__(self, keys: list[str], values: list[float]) -> None:
        self.keys, self.row = keys, np.array(values, dtype="<f8")


def snapshot(n: int) -> bytes:
    table, rows, shared = ShapeTable(), [], {}
    collectors = {p: FakeCollectors(p, 0) for p in ("cpu", "gpu8")}
    for i in range(1, n + 1):
        profile = profile_of("mixed", i)
        values, _ = collectors[profile].sample(1_000_000.0 + i)
        keys = shared.setdefault(profile, list(values))
        row = {"name": f"sim-{i:05d}", "state": "live", "hostname": f"{profile}-{i:05d}",
               "labels": {"sim": "true", "profile": profile}, "cpu_count": 112 if profile == "gpu8" else 16,
               "gpu_count": 8 if profile == "gpu8" else 0, "heartbeat_age_s": 1.0, "sample_age_s": 2.0,
               "drained": False, "unhealthy": False}
        rows.append(add_values(row, _Latest(keys, [values[k] for k in keys]), table))
    return msgspec.json.encode(table.take({"type": "snapshot", "ts": time.time(), "machines": rows}))


def cpu(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return round(statistics.median(times), 3), out


def run(n: int, reps: int, per_core: bool) -> dict:
    doc = snapshot(n)
    state = FleetState(per_core=per_core)
    apply_s, _ = cpu(lambda: state.apply_line(doc), reps)
    collector = FleetCollector(state, LinkStats(), ScrapeStats(), max_sample_age=float("inf"))  # never stale here
    collect_s, families = cpu(lambda: list(collector.collect()), reps)
    registry = CollectorRegistry()
    registry.register(collector)
    expose_s, text = cpu(lambda: generate_latest(registry), reps)
    gzip_s, packed = cpu(lambda: gzip.compress(text, GZIP_LEVEL), reps)
    return {"machines": n, "per_core": per_core, "document_bytes": len(doc), "apply_cpu_s": apply_s,
            "series": sum(len(f.samples) for f in families), "collect_cpu_s": collect_s,
            "exposition_cpu_s": expose_s, "gzip_cpu_s": gzip_s, "text_bytes": len(text), "gzip_bytes": len(packed),
            "scrape_cpu_s": round(expose_s + gzip_s, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, action="append")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    runs = [run(n, args.reps, pc) for n in (args.machines or [1000, 10000]) for pc in (False, True)]
    rows = [f"| {r['machines']:,} | {'yes' if r['per_core'] else 'no'} | {r['series']:,} | {r['apply_cpu_s']} s "
            f"({r['document_bytes'] / 1e6:.1f} MB) | {r['collect_cpu_s']} s | {r['exposition_cpu_s']} s "
            f"| {r['gzip_cpu_s']} s | **{r['scrape_cpu_s']} s** | {r['text_bytes'] / 1e6:.1f} MB "
            f"| {r['gzip_bytes'] / 1e6:.2f} MB |" for r in runs]
    md = ("## Prometheus exporter: its own CPU per scrape (`bench/export_render.py`)\n\n"
          "The snapshot a control plane sends for N machines of the simulator's mixed profile (packed as "
          "`subscribe --values` packs it), applied and exposed in one process; CPU seconds, so the box's load "
          "does not count. A scrape = exposition (collect + prometheus_client formatting) + gzip.\n\n"
          "| machines | `--per-core` | series | apply a snapshot (its size) | collect | exposition | gzip "
          "| scrape | text | gzip |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    command = "python -m bench.export_render " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("export_render", command.strip(), {"runs": runs}, md)


if __name__ == "__main__":
    main()
