"""A Prometheus scrape of the whole fleet: time and bytes at N machines.

For each N: a real ``centrality server`` (SQLite), ``centrality simulate``
(mixed profile: 1 machine in 4 has 8 GPUs; 1 Hz samples in 5 s batches) and
``centrality export prometheus`` logged in with a viewer key, each its own
process on this machine. Once the exporter shows every machine:

* scrapes as Prometheus makes them (``Accept-Encoding: gzip``) and without
  compression: wall time, bytes, series (parsed with prometheus_client's
  parser);
* the exporter's CPU and RSS between scrapes (keeping the subscription), and
  the control plane's CPU with and without the exporter subscribed;
* the same scrape with ``--per-core`` (a second exporter).

    python -m bench.export_prometheus --agents 1000 --agents 10000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import time
import urllib.request

import psutil

from prometheus_client.parser import text_string_to_metric_families

from . import report
from .fleet import Env, cpu_window, free_port, live, start_server, wait_until


def scrape(url: str, gz: bool) -> tuple[float, bytes, int]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
        wire = len(body)
        if r.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return time.perf_counter() - t, body, wire


def series(text: str) -> tuple[int, dict[str, int]]:
    per: dict[str, int] = {}
    for fam in text_string_to_metric_families(text):
        per[fam.name] = len(fam.samples)
    return sum(per.values()), per


def machines_seen(url: str) -> int:
    try:
        _, body, _ = scrape(url, False)
    except OSError:
        return 0
    text = body.decode()
    if "centrality_up 1.0" not in text:
        return 0
    return text.count('state="live"} 1.0')


def start_exporter(env: Env, port: int, *extra: str, log: str):
    proc = env.spawn("--context", "prom", "export", "prometheus", "--listen", f"127.0.0.1:{port}", *extra, log=log)
    return proc, f"http://127.0.0.1:{port}/metrics"


def measure_scrapes(url: str, reps: int, pid: int) -> dict:
    """Scrapes with and without gzip, interleaved (the box's load varies); wall time, and the
    exporter's CPU time over each scrape (it is single-threaded under the GIL, so CPU time is
    its work, whatever else the two cores are doing)."""
    proc = psutil.Process(pid)
    runs: dict[bool, list[tuple[float, float, int, bytes]]] = {True: [], False: []}
    for _ in range(reps):
        for gz in (True, False):
            c0 = sum(proc.cpu_times()[:2])
            wall, body, wire = scrape(url, gz)
            runs[gz].append((wall, sum(proc.cpu_times()[:2]) - c0, wire, body))
    total, per = series(runs[False][-1][3].decode())
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    return {"gzip_s_median": med(r[0] for r in runs[True]), "gzip_s_max": round(max(r[0] for r in runs[True]), 3),
            "gzip_cpu_s_median": med(r[1] for r in runs[True]), "gzip_bytes": runs[True][-1][2],
            "plain_s_median": med(r[0] for r in runs[False]), "plain_cpu_s_median": med(r[1] for r in runs[False]),
            "plain_bytes": runs[False][-1][2], "series": total,
            "load_average": round(os.getloadavg()[0], 1),
            "largest_families": dict(sorted(per.items(), key=lambda kv: -kv[1])[:5])}


def run(n: int, window: float, reps: int, processes: int) -> dict:
    env = Env()
    # 10,000 first handshakes and enrolments on a loaded 2-core box take longer than the
    # 30 s an unregistered connection is given by default: the join would churn forever.
    env.env["CENTRALITY_LOGIN_GRACE"] = "5m"
    port = free_port()
    server = start_server(env, port)
    sim = exporter = per_core = None
    result: dict = {"agents": n}
    try:
        join = env.cli("token", "create", "--uses", str(n), "--ttl", "2h").stdout.strip()
        sim = env.spawn("simulate", "--agents", str(n), "--processes", str(processes), "--join", join,
                        "--state-dir", str(env.root / "sim"), "--ramp", str(max(5, n / 400)), log="simulate")
        # A first join of 10,000 handshakes and enrolments on two shared cores is slow: be patient.
        wait_until(lambda: live(env) >= n, 120 + n / 8, f"{n} agents live", 5)
        time.sleep(15)  # batches settle into their 5 s rhythm

        key = env.root / "prom_ed25519"
        from centrality_core import sshlink

        sshlink.generate_key(key)
        r = env.cli("keys", "add", "--role", "viewer", "prom", f"{key}.pub")
        assert r.returncode == 0, r.stderr
        fp = env.json("status")["fingerprint"]
        r = env.cli("login", f"127.0.0.1:{port}", "--key", str(key), "--fingerprint", fp, "--name", "prom")
        assert r.returncode == 0, r.stderr

        cp_before, _ = cpu_window(server.pid, window)
        eport = free_port()
        exporter, url = start_exporter(env, eport, log="exporter")
        t0 = time.monotonic()
        wait_until(lambda: machines_seen(url) >= n, 300, "the exporter to show every machine", 2)
        result["first_full_scrape_after_s"] = round(time.monotonic() - t0, 1)
        time.sleep(10)
        cp_with, _ = cpu_window(server.pid, window)
        exp_cpu, exp_rss = cpu_window(exporter.pid, window)  # subscription only, nobody scraping
        result["control_plane_cpu_percent"] = {"without_exporter": round(cp_before, 1),
                                               "with_exporter": round(cp_with, 1)}
        result["exporter_idle"] = {"cpu_percent": round(exp_cpu, 1), "rss_mb": round(exp_rss)}
        result["scrape"] = measure_scrapes(url, reps, exporter.pid)
        _, body, _ = scrape(url, False)
        own = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
               if s.name.startswith("centrality_exporter_")}
        result["scrape"]["collect_s"] = round(own.get("centrality_exporter_collect_duration_seconds", 0.0), 3)
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(60)
        exporter = None

        pport = free_port()
        per_core, purl = start_exporter(env, pport, "--per-core", log="exporter-per-core")
        wait_until(lambda: machines_seen(purl) >= n, 300, "the per-core exporter to show every machine", 2)
        result["scrape_per_core"] = measure_scrapes(purl, max(2, reps // 2), per_core.pid)
    finally:
        for p in (per_core, exporter, sim, server):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT if p is sim else signal.SIGTERM)
                try:
                    p.wait(120)
                except Exception:  # noqa: BLE001
                    p.kill()
        shutil.rmtree(env.root, ignore_errors=True)  # 10,000 machines' keys and a store: ~1 GB
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, action="append")
    ap.add_argument("--window", type=float, default=20, help="seconds of CPU measured")
    ap.add_argument("--reps", type=int, default=5, help="scrapes measured of each kind")
    ap.add_argument("--processes", type=int, default=2, help="simulator worker processes")
    args = ap.parse_args()
    runs = []
    for n in args.agents or [1000, 10000]:
        try:
            runs.append(run(n, args.window, args.reps, args.processes))
        except Exception as exc:  # noqa: BLE001 - report what failed and go on
            runs.append({"agents": n, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    rows = []
    for r in runs:
        if "error" in r:
            rows.append(f"| {r['agents']:,} | failed: {r['error']} ||||||||")
            continue
        s, pc, cp = r["scrape"], r["scrape_per_core"], r["control_plane_cpu_percent"]
        rows.append(
            f"| {r['agents']:,} | {s['series']:,} | {s['gzip_s_median']} s (max {s['gzip_s_max']}) "
            f"| {s['gzip_cpu_s_median']} s | {s['gzip_bytes'] / 1e6:.2f} MB | {s['plain_s_median']} s "
            f"| {s['plain_bytes'] / 1e6:.1f} MB | {s['collect_s']} s "
            f"| {r['exporter_idle']['cpu_percent']} % / {r['exporter_idle']['rss_mb']} MB "
            f"| {cp['without_exporter']} -> {cp['with_exporter']} % "
            f"| {pc['series']:,}: {pc['gzip_s_median']} s, {pc['gzip_cpu_s_median']} s CPU, "
            f"{pc['gzip_bytes'] / 1e6:.2f} MB | {s['load_average']} |")
    md = ("## Prometheus exporter: one scrape of the whole fleet (`bench/export_prometheus.py`)\n\n"
          "N simulated machines (`centrality simulate`, mixed profile: 1 in 4 has 8 GPUs, 2 labels each) on one "
          "control plane (SQLite); `centrality export prometheus` logged in with a viewer key, subscribed with "
          "`--interval 5s`; all on this 2-core machine. A scrape is a real HTTP GET of `/metrics`, timed from "
          "request to last byte (medians of interleaved runs); gzip is what Prometheus asks for. Exporter CPU = "
          "its CPU time during a scrape, steadier than wall time on a shared box. Collect = the part of a scrape spent "
          "gathering samples before prometheus_client formats them. Exporter idle = its CPU and RSS between "
          "scrapes (decoding the subscription's updates).\n\n"
          "| machines | series | scrape, gzip | exporter CPU per scrape | bytes, gzip | scrape, plain | bytes, plain "
          "| collect | exporter idle CPU / RSS | control-plane CPU without -> with the exporter | `--per-core`: series, "
          "scrape, CPU, gzip bytes | load average |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    command = "python -m bench.export_prometheus " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("export_prometheus", command.strip(), {"runs": runs}, md)


if __name__ == "__main__":
    main()
