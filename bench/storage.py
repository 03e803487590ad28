"""Metric history: the old layout (raw batch frames + JSON minutes) beside chunks, in one run.

1. **Format**: bytes per value of tier 0 and bytes per key-minute of the
   minute tier, for the simulated fleet (``cpu``, ``gpu8``, ``mixed`` = 3 cpu
   for 1 gpu8) and, with ``--real FILE`` (``bench/capture_real.py``), this
   machine's real agent; zstd levels beside lz4.
2. **On disk** (SQLite and Postgres): a fleet of ``--machines`` written in the
   old layout (batches staged as the agent's JSON frame), measured on disk,
   then compacted and measured again; the same fleet staged as the control
   plane stages it now (``store/staged.py``) and compacted; CPU per stored
   batch of each write, each compaction and retention.
3. **At 1,000 machines**: ``metrics NAME --since 1h`` (a gpu8 machine, raw)
   and ``--since 24h`` (minutes), as the control plane runs them, old layout
   beside chunks; a retention pass, rows touched and time, old vs new.

    python -m bench.storage --real real.json

One module a part: ``storage_format.py`` (the simulated fleet and part 1),
``storage_disk.py`` (part 2), ``storage_scale.py`` (part 3); this one runs them
and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
import time

import msgspec
import numpy as np

from centrality_core.runtime import tune_malloc

from . import report, storage_scale
from .storage_disk import on_disk, on_staged
from .storage_format import DEFAULT_WINDOW, chunk_bytes, formats, real, simulate
from .storage_scale import CLOCK, fleet, retention



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--machines", type=int, default=40, help="simulated machines (mixed: 1 in 4 is gpu8)")
    ap.add_argument("--seconds", type=int, default=3600, help="history simulated per machine (1 Hz)")
    ap.add_argument("--fleet", type=int, default=1000, help="machines in the store for the query/retention part")
    ap.add_argument("--real", help="rows captured by bench/capture_real.py (this machine's real agent)")
    ap.add_argument("--clock", choices=list(CLOCK), default="cpu",
                    help="time reads in this process's CPU time (default) or by the wall clock")
    args = ap.parse_args()
    storage_scale.clock = CLOCK[args.clock]
    tune_malloc()  # as `centrality server` runs (centrality_core/runtime.py), for the old layout too
    backends = args.backend or ["sqlite", "postgres"]
    now = time.time()
    start = now - args.seconds - (now - args.seconds) % 3600 - 3600  # whole hours: whole chunks
    t = time.perf_counter()
    machines = [simulate(f"m{i:04d}", "gpu8" if i % 4 == 3 else "cpu", i, start, args.seconds)
                for i in range(args.machines)]
    print(f"simulated {args.machines} machines x {args.seconds} s in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    groups = {"cpu": [m for m in machines if m.profile == "cpu"][:3],
              "gpu8": [m for m in machines if m.profile == "gpu8"][:1], "mixed (3 cpu : 1 gpu8)": machines}
    if args.real:
        groups["real agent (this machine)"] = [real(args.real, start)]
    fmt = formats(groups)
    disk, fleets, rets = [], [], []
    frame_avg = int(np.mean([len(f) for m in machines for _, _, f in m.frames]))
    minute_avg = int(np.mean([len(msgspec.json.encode(x["stats"])) for m in machines for x in m.minutes]))
    chunk_avg = int(np.mean([chunk_bytes(m, DEFAULT_WINDOW, "zstd", 3)[0] / max(1, len(m.frames) // int(DEFAULT_WINDOW // 5))
                             for m in machines]))
    with contextlib.ExitStack() as stack:  # the SQLite files and the Postgres cluster go, failed or not
        for backend in backends:
            if backend == "postgres":
                sys.path.insert(0, str(report.ROOT))
                from tests.fixtures.postgres import start_postgres

                pg = start_postgres()
                stack.callback(pg.stop)
                urls = _pg_databases(pg, 4)
            else:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="centrality-bench-storage-", ignore_cleanup_errors=True))
                urls = [f"sqlite:///{scratch}/{n}.db" for n in ("disk", "fleet", "retention", "staged")]
            disk.append(on_disk(backend, urls[0], machines, now + 3600))
            disk[-1].update(on_staged(urls[3], machines, now + 3600))
            print(disk[-1], file=sys.stderr)
            fleets.append(fleet(backend, urls[1], machines, start + args.seconds, args.fleet))
            print(fleets[-1], file=sys.stderr)
            rets.append(retention(backend, urls[2], args.fleet, frame_avg, minute_avg, chunk_avg, now))
            print(rets[-1], file=sys.stderr)
    command = "python -m bench.storage " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("storage", command.strip(), {"clock": args.clock, "formats": fmt, "disk": disk, "fleet": fleets,
                                              "retention": rets},
                 markdown(fmt, disk, fleets, rets, args))


def _pg_databases(pg, n: int) -> list[str]:
    import psycopg

    from tests.fixtures.postgres import libpq_url

    urls = []
    with psycopg.connect(libpq_url(pg.url()), autocommit=True) as conn:
        for i in range(n):
            conn.execute(f"CREATE DATABASE bench_storage_{i}")
            urls.append(pg.url(f"bench_storage_{i}"))
    return urls


def markdown(fmt, disk, fleets, rets, args) -> str:
    w, dw = f"{DEFAULT_WINDOW:.0f}s", f"{DEFAULT_WINDOW / 60:.0f} min"
    lines = ["## Metric history on disk (`bench/storage.py`)", "",
             f"{args.machines} simulated machines (1 in 4 an 8-GPU node), {args.seconds} s each at 1 Hz, "
             "batches of 5 samples as agents send them; the old layout (raw batch frames, JSON minutes) "
             "measured beside chunks in the same run.", "",
             f"**Format** (payload bytes; tier 0 in chunks of 10 minutes, {DEFAULT_WINDOW / 60:.0f} minutes "
             "(the default `chunk_seconds`) and an hour):", "",
             f"| fleet | values | old raw B/value | zstd-3 / 10 min | **zstd-3 / {dw}** | zstd-3 / 1 h | "
             f"zstd-1 / {dw} | zstd-9 / {dw} | lz4-0 / {dw} | lz4-9 / {dw} | old minute B/key-minute "
             "| new minute B/key-minute |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in fmt:
        c = r["codecs"]
        lines.append(f"| {r['fleet']} | {r['values']:,} | {r['old_raw_bpv']} | {c['zstd-3/600s']['bpv']} | "
                     f"**{c[f'zstd-3/{w}']['bpv']}** | {c['zstd-3/3600s']['bpv']} | {c[f'zstd-1/{w}']['bpv']} | "
                     f"{c[f'zstd-9/{w}']['bpv']} | {c[f'lz4-0/{w}']['bpv']} | {c[f'lz4-9/{w}']['bpv']} | "
                     f"{r['old_minute_bpkm']} | {r['new_minute_bpkm']} |")
    mixed = next(r for r in fmt if r["fleet"].startswith("mixed"))["codecs"]
    lines += ["", f"Encode CPU per stored batch (mixed, {dw} chunks): " + ", ".join(
        f"{k.split('/')[0]} {v['encode_us_per_batch']} µs" for k, v in mixed.items() if k.endswith(f"/{w}")), "",
        "**On disk** (tables with their indexes; SQLite after VACUUM, chunk table shared by tiers in "
        "proportion to their payloads):", "",
        "| store | old raw B/value | new tier 0 B/value | old minute B/key-minute | new minute B/key-minute "
        "| JSON frame write µs/batch | JSON staged compaction µs/batch |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for d in disk:
        lines.append(f"| {d['backend']} | {d['old_raw_bpv_disk']} | {d['new_raw_bpv_disk']} | "
                     f"{d['old_minute_bpkm_disk']} | {d['new_minute_bpkm_disk']} | {d['write_us_per_batch']} | "
                     f"{d['compact_us_per_batch']} |")
    lines += ["", f"**Reads at {args.fleet:,} machines** (in the control plane: the query and the JSON "
              "encoding of its answer (query alone in brackets), median of 5 "
              f"({'CPU time of this process' if args.clock == 'cpu' else 'wall clock'}); a gpu8 machine, "
              "every key). "
              "Old layout: rows from JSON batches and minutes. Rows: chunks, answered as rows (what `metrics` "
              "answers a plain SSH client). Columns: chunks, answered as columns (`metrics --columns`, what the "
              "CLI and the dashboard ask):", "",
              "| store | `--since 1h` raw: old | rows | **columns** | `--stream gpu` (rows) "
              "| `--since 24h` minutes: old | rows | **columns** | `--stream gpu` (rows) | rows 1h / 24h |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in fleets:
        lines.append(f"| {f['backend']} | {f['old_1h_raw_ms']} ms ({f['old_1h_raw_query_ms']}) | "
                     f"{f['new_1h_raw_ms']} ms ({f['new_1h_raw_query_ms']}) | "
                     f"**{f['cols_1h_raw_ms']} ms** ({f['cols_1h_raw_query_ms']}) | {f['new_1h_raw_gpu_ms']} ms | "
                     f"{f['old_24h_1m_ms']} ms ({f['old_24h_1m_query_ms']}) | "
                     f"{f['new_24h_1m_ms']} ms ({f['new_24h_1m_query_ms']}) | "
                     f"**{f['cols_24h_1m_ms']} ms** ({f['cols_24h_1m_query_ms']}) | {f['new_24h_1m_gpu_ms']} ms | "
                     f"{f['rows_1h']:,} / {f['rows_24h']:,} |")
    lines += ["", "The answer and the client's work to make rows of it (this process, same clock, median of 5: the JSON rows "
              "decoded, or the columns decoded and made into the same dicts, checked equal):", "",
              "| store | 1h: rows answer | columns answer | client, rows | client, columns "
              "| 24h: rows answer | columns answer | client, rows | client, columns |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    for f in fleets:
        lines.append(f"| {f['backend']} | {mb(f['rows_1h_raw_bytes'])} | {mb(f['cols_1h_raw_bytes'])} | "
                     f"{f['rows_1h_raw_client_ms']} ms | {f['cols_1h_raw_client_ms']} ms | "
                     f"{mb(f['rows_24h_1m_bytes'])} | {mb(f['cols_24h_1m_bytes'])} | "
                     f"{f['rows_24h_1m_client_ms']} ms | {f['cols_24h_1m_client_ms']} ms |")
    lines += ["", f"**Retention pass at {args.fleet:,} machines**:", "",
              "| store | old: rows deleted per pass | time | new: chunks deleted | partitions dropped | time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rets:
        lines.append(f"| {r['backend']} | {r['old_rows']:,} | {r['old_ms']} ms | {r['new_chunks']:,} | "
                     f"{r['new_partitions']} | {r['new_ms']} ms |")
    lines += ["", "**Control-plane CPU per stored batch** (this process; SQLite runs in it, Postgres "
              "does its share in its own processes): writing the batch as it arrives, then getting rid of it. "
              "Old layout: the agent's JSON frame stored as received, later the retention delete of its row. "
              "JSON staged: the same write, then compaction into a chunk (decode, encode, insert, delete) and "
              "later the retention of the chunk (what rows staged before an upgrade still cost). Staged: the "
              "batch put in its staged form (`store/staged.py`) and written, compaction, retention of the chunk:",
              "",
              "| store | old: write | old: retention | **old total** | JSON staged: compaction | JSON staged total "
              "| staged: stage + write | staged: compaction | chunk retention | **staged total** |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d, r in zip(disk, rets):
        old_ret = r["old_cpu_ms"] * 1e3 / r["old_batches"]
        new_ret = r["new_cpu_ms"] * 1e3 / r["new_batches"]
        w, comp = d["write_us_per_batch"], d["compact_us_per_batch"]
        sw, sc = d["staged_write_us_per_batch"], d["staged_compact_us_per_batch"]
        lines.append(f"| {d['backend']} | {w} µs | {old_ret:.1f} µs | **{w + old_ret:.1f} µs** | {comp} µs | "
                     f"{w + comp + new_ret:.1f} µs | {sw} µs | {sc} µs | {new_ret:.2f} µs | "
                     f"**{sw + sc + new_ret:.1f} µs** |")
    lines += ["", "Staged rows on disk (waiting for compaction, up to one and a half `chunk_seconds`): " + ", ".join(
        f"{d['backend']} {d['staged_raw_bpv_disk']} B/value (JSON frames: {d['old_raw_bpv_disk']})" for d in disk)]
    lines += ["", *disk_cost(fmt, disk, args)]
    return "\n".join(lines)


#: Default retention of each tier, days (centrality_core/settings.py).
DEFAULT_DAYS = {"raw": 2, "1m": 30, "1h": 730}


def disk_cost(fmt: list[dict], disk: list[dict], args) -> list[str]:
    """Disk at the default retentions for 100 / 1,000 / 10,000 machines, from the
    figures measured above (SQLite on-disk overhead applied to payload sizes)."""
    sq = next((d for d in disk if d["backend"] == "sqlite"), disk[0])
    over_raw = sq["new_raw_bpv_disk"] / max(sq["new_raw_bpv_payload"], 1e-9)
    over_min = sq["new_minute_bpkm_disk"] / max(sq["new_minute_bpkm_payload"], 1e-9)
    lines = ["**Disk at the default retentions** (raw 2 days, minutes 30 days, hours 2 years; hours "
             "estimated at the minute tier's bytes per key-point):", "",
             "| fleet | keys/machine | raw | minutes | hours | per machine | 100 machines | 1,000 | 10,000 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in fmt:
        if r["fleet"] in ("cpu", "gpu8"):
            continue
        keys = r["values"] / (r["machines"] * r["seconds"])
        raw = r["codecs"][f"zstd-3/{DEFAULT_WINDOW:.0f}s"]["bpv"] * over_raw * keys * 86400 * DEFAULT_DAYS["raw"]
        minutes = r["new_minute_bpkm"] * over_min * keys * 1440 * DEFAULT_DAYS["1m"]
        hours = r["new_minute_bpkm"] * over_min * keys * 24 * DEFAULT_DAYS["1h"]
        one = raw + minutes + hours
        gb = lambda b: f"{b / 1e9:,.1f} GB" if b >= 1e9 else f"{b / 1e6:,.0f} MB"  # noqa: E731
        lines.append(f"| {r['fleet']} | {keys:.0f} | {gb(raw)} | {gb(minutes)} | {gb(hours)} | {gb(one)} | "
                     f"{gb(100 * one)} | {gb(1000 * one)} | {gb(10000 * one)} |")
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
