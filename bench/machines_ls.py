"""``centrality machines ls --json`` at N machines, without a fleet: where the time goes.

A real control plane (SQLite, in this process) whose registry holds N live
machines (simulated machines' info, 1 in 4 with 8 GPUs, two labels each),
registered the way an agent's hello registers them but without an SSH
connection per machine. Measured, medians of ``--reps``:

* the whole command: ``centrality machines ls --json`` as a subprocess, its
  wall time and CPU (the CLI process's user + system), output to a pipe;
  beside it its floor, ``centrality status --json`` (Python start-up,
  imports, an SSH handshake and a tiny answer), in the same run;
* its stages, in this process: the control plane building the rows (the
  request handler), encoding them as JSON, the request over an SSH channel
  (server work + transfer), the client's typed decode and cleaning of the
  answer, and ``--json`` printing it.

CPU is the figure to compare on a busy box: with the two cores saturated by
a fan-in (``bench/fleet.py``), a command gets a share of a core, so its wall
time there is a multiple of its CPU time here.

    python -m bench.machines_ls                    # 10,000 machines
    python -m bench.machines_ls --machines 2000 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import report

GOAL_S = 1.0
PY = sys.executable


class _Session:
    """Stands in for an agent's SSH session in the registry (nothing is sent to it)."""

    def close(self, why: str = "") -> None:
        pass


class _Operator:
    """Stands in for the operator's connection a request handler is given (its role only)."""

    role = "operator"
    actor = "operator:bench"


def register(cp, n: int) -> None:
    """N machines registered as agents' hellos register them (info, identity, labels, key)."""
    import msgspec

    from agent_runtime.collectors.simulated import FakeCollectors
    from centrality_core import protocol as p

    for i in range(n):
        gpu = i % 4 == 0
        name = f"{'gpu' if gpu else 'cpu'}-{i:05d}"
        info = FakeCollectors("gpu8" if gpu else "cpu", i).machine_info()
        info.update(hostname=name, agent_version="0.1.0")
        typed = msgspec.convert(info, p.MachineInfo)
        labels = {"pool": ("train", "eval", "batch")[i % 3], "rack": f"r{i // 40:03d}"}
        reg = cp.registry.register(name, msgspec.to_builtins(typed), typed.identity(), labels,
                                   f"SHA256:bench{i:05d}", _Session())
        assert reg.machine is not None, reg.refusal


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def atimed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@contextlib.contextmanager
def cli_gc():
    """The CLI's garbage collector (CPython's default thresholds), not the control plane's."""
    old = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*old)


async def command(env: dict, *args: str, reps: int) -> dict:
    """A CLI command as a subprocess: median wall and CPU seconds, and its stdout's size."""
    walls, cpus, size = [], [], 0
    for _ in range(reps):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(PY, "-m", "centrality_cli", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        ps = psutil.Process(proc.pid)
        cpu = 0.0
        chunks = []
        while True:
            chunk = await proc.stdout.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            try:
                c = ps.cpu_times()
                cpu = c.user + c.system  # last reading before it exits
            except psutil.Error:
                pass
        err = await proc.stderr.read()
        await proc.wait()
        walls.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"centrality {' '.join(args)}: exit {proc.returncode}: {err.decode()[:300]}")
        cpus.append(cpu)
        size = sum(map(len, chunks))
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
            "bytes": size}


async def measure(n: int, reps: int, cli_from: str | None = None) -> dict:
    import msgspec

    from centrality_cli import output
    from centrality_core import documents as docs
    from centrality_core.client import OperatorClient
    from centrality_core.settings import resolve_server
    from control_plane.requests.dispatch import REQUESTS, Ctx
    from control_plane.server import ControlPlane

    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": f"sqlite:///{ROOT_DIR / 'store.db'}"}))
    await cp.start()
    try:
        register(cp, n)
        await cp.writer.flush()
        spec = REQUESTS["machines ls"]
        ns = spec.parser.parse_args([])
        ctx = Ctx(cp.connections.request_services, _Operator(), lambda v: None)
        stages = {}
        rows = await spec.handler(ctx, ns)
        stages["server: build rows"] = await atimed(lambda: spec.handler(ctx, ns), reps)
        stages["server: encode JSON"] = timed(lambda: msgspec.json.encode(rows), reps)
        async with OperatorClient() as client:
            text = ""

            async def over_ssh():
                nonlocal text
                result = await client.connection.run("machines ls", check=False, encoding="utf-8")
                text = result.stdout

            stages["request over SSH (server + transfer)"] = await atimed(over_ssh, reps)
            typed = await client.machines_ls()
            t = list[docs.MachineSummary]
            with cli_gc():
                stages["client, before: JSON to builtins, convert, clean"] = timed(
                    lambda: docs.decode(msgspec.json.decode(text.strip()), t), reps)
                raw = text.strip().encode()
                if hasattr(docs, "decode_json"):  # absent from older checkouts (a comparison run)
                    stages["client: typed decode (+ clean when not plain)"] = timed(
                        lambda: docs.decode_json(raw, t), reps)
        stdout = sys.stdout
        try:
            sys.stdout = io.StringIO()
            with cli_gc():
                stages["CLI: print --json"] = timed(lambda: output.print_json(typed), reps)
        finally:
            sys.stdout = stdout
        env = report.installed_env(os.environ)
        if cli_from:  # the CLI of another checkout, against this control plane
            env["PYTHONPATH"] = cli_from
        whole = await command(env, "machines", "ls", "--json", reps=reps)
        floor = await command(env, "status", "--json", reps=reps)
        helps = await command(env, "--help", reps=reps)
        shared = {}
        if not cli_from:  # the same two with a shared connection (CENTRALITY_PERSIST)
            senv = await share_connection(env)
            master = next(p for p in psutil.process_iter(["cmdline"])
                          if "centrality_cli.sharemaster" in " ".join(p.info["cmdline"] or ()))
            for what, args in [("machines_ls_json", ("machines", "ls", "--json")), ("status_json", ("status", "--json"))]:
                before = sum(master.cpu_times()[:2])
                shared[what] = await command(senv, *args, reps=reps)
                shared[what]["master_cpu_s"] = round((sum(master.cpu_times()[:2]) - before) / reps, 3)
            await command(senv, "disconnect", reps=1)
    finally:
        await cp.stop()
    return {"machines": n, "reps": reps, "answer_bytes": len(text), "stages_s": {k: round(v, 4) for k, v in stages.items()},
            "machines_ls_json": whole, "status_json": floor, "help": helps, "shared": shared,
            "load_average_1m": round(psutil.getloadavg()[0], 2)}


async def share_connection(env: dict) -> dict:
    """``env`` with a shared connection (``centrality_core/sharing.py``) already open: one
    command opens it, the master it leaves is waited for."""
    senv = {**env, "CENTRALITY_PERSIST": "10m", "XDG_RUNTIME_DIR": str(ROOT_DIR)}
    await command(senv, "status", "--json", reps=1)
    for _ in range(100):
        if any(p.name.startswith("s-") and not p.name.endswith((".lock", ".log")) for p in (ROOT_DIR / "centrality").iterdir()):
            return senv
        await asyncio.sleep(0.1)
    raise RuntimeError("the shared connection's master did not start")


def markdown(r: dict) -> str:
    w, f, shared = r["machines_ls_json"], r["status_json"], r.get("shared") or {}
    lines = [
        "## `machines ls --json` at fleet scale (`bench/machines_ls.py`)",
        "",
        f"A real control plane (SQLite, in the benchmark's process) whose registry holds {r['machines']:,} live "
        "machines (simulated machines' info, 1 in 4 with 8 GPUs), without a connection per machine; the CLI as a "
        f"subprocess, medians of {r['reps']}. Goal: <= {GOAL_S:g} s at 10,000.",
        "",
        "| command | wall | CPU of the CLI process | stdout |",
        "| --- | --- | --- | --- |",
        f"| `centrality machines ls --json` | **{w['wall_s']:.3f} s** | {w['cpu_s']:.3f} s | {w['bytes']:,} B |",
        f"| floor: `centrality status --json` | {f['wall_s']:.3f} s | {f['cpu_s']:.3f} s | {f['bytes']:,} B |",
        f"| `centrality --help` | {r['help']['wall_s']:.3f} s | {r['help']['cpu_s']:.3f} s | |",
        *[f"| {what}, shared connection (`CENTRALITY_PERSIST`) | **{c['wall_s']:.3f} s** | {c['cpu_s']:.3f} s "
          f"(+ {c['master_cpu_s']:.3f} s of the master's) | {c['bytes']:,} B |"
          for what, c in [("`machines ls --json`", shared.get("machines_ls_json")),
                          ("`status --json`", shared.get("status_json"))] if c],
        "",
        f"Stages ({r['answer_bytes']:,} bytes of answer):",
        "",
        "| stage | time |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v * 1000:.1f} ms |" for k, v in r["stages_s"].items()]
    lines += ["", f"Load average during the run: {r['load_average_1m']:.1f} on {psutil.cpu_count()} cores."]
    return "\n".join(lines)


ROOT_DIR = Path(tempfile.mkdtemp(prefix="centrality-ls-"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cli-from", metavar="DIR", help="run the CLI of the checkout in DIR (a comparison)")
    ap.add_argument("--no-report", action="store_true", help="print the results, write nothing")
    args = ap.parse_args()
    # A throw-away installation: the control plane writes its `local` context there, the CLI reads it.
    os.environ.update(HOME=str(ROOT_DIR), XDG_CONFIG_HOME=str(ROOT_DIR / "config"),
                      XDG_DATA_HOME=str(ROOT_DIR / "data"), CENTRALITY_CONTEXT="local")
    for var in [v for v in os.environ if v.startswith("CENTRALITY_") and v != "CENTRALITY_CONTEXT"]:
        del os.environ[var]
    from centrality_core.runtime import tune_gc

    tune_gc()  # this process is the control plane: tuned as `centrality server` tunes it
    result = asyncio.run(measure(args.machines, args.reps, args.cli_from))
    result["cli_from"] = args.cli_from
    md = markdown(result)
    if args.no_report or args.cli_from:
        print(md)
        return
    command = "python -m bench.machines_ls" + ("" if args.machines == 10_000 else f" --machines {args.machines}")
    if args.reps != 5:
        command += f" --reps {args.reps}"
    report.write("machines_ls", command, result, md)
    print(md)


if __name__ == "__main__":
    main()
