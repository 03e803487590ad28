"""``centrality cp`` of one file to N simulated machines vs SFTP with a new SSH connection per
host (fan-out 64), and the keystroke round trip of ``centrality ssh`` vs direct ssh to a local sshd.

Our side: a real ``centrality server`` process and N real agents run by
``centrality simulate --files-root`` (each machine writes under its own
directory) in worker processes. The copy is the whole ``centrality cp FILE
--all --yes :/PATH`` command (Python start-up, the operator's handshake, the
upload, the fan-out, every agent's write, fsync, SHA-256 check and rename),
checked afterwards (every machine's file has the right size, a sample has the
right SHA-256). Sampled while it runs: the control plane's RSS (the memory
bound) and whether any machine left ``live`` (heartbeats not starved).

Baseline: real OpenSSH ``sshd`` processes on 127.0.0.2... play the N hosts; a
client (asyncssh, in one process: cheaper than forking scp per host) opens a
new SSH connection per host, SFTP-puts the file to its own path, closes, 64
at a time.

Keystrokes: one byte written to a shell's PTY and read back (the PTY's echo),
200 times: through the control plane (``ssh NAME`` request on an open
operator connection: operator -> control plane -> agent -> PTY and back) and
directly to a local sshd (client -> sshd -> PTY and back).

    python -m bench.copy_fanout --agents 200 --size-mb 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil

from . import report
from .exec_fanout import _cli, _env, cpu_seconds
from .ingest import free_port

ROOT = report.ROOT
KEYSTROKES = 200


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _keystrokes(chan_writer, reader, n: int) -> list[float]:
    """Round trips of one byte through a PTY that echoes it."""
    await asyncio.sleep(1.0)
    chan_writer.write("stty -icanon; PS1=; export PS1\r")
    await asyncio.sleep(1.0)
    try:
        while True:
            await asyncio.wait_for(reader.read(65536), 0.3)
    except asyncio.TimeoutError:
        pass
    times = []
    for i in range(n):
        ch = "abcdefghij"[i % 10]
        t0 = time.perf_counter()
        chan_writer.write(ch)
        got = ""
        while ch not in got:
            got += await asyncio.wait_for(reader.read(64), 10)
        times.append(time.perf_counter() - t0)
    chan_writer.write("\x03")
    return times


async def centrality_side(agents: int, processes: int, size_mb: int, reps: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="centrality-bench-cp-"))
    env = _env(tmp)
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")})
    port = free_port()
    log = tmp / "server.log"
    roots = tmp / "machines"
    payload = tmp / "payload.bin"
    with open(payload, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    with open(log, "wb") as f:
        server = _cli(env, "server", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp}/cp.db",
                      "--heartbeat-interval", "5s", "--limbo-after", "20s", stderr=f)
    sim = None
    try:
        while "listening on" not in log.read_text(errors="replace"):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        from centrality_core.client import OperatorClient

        async with OperatorClient("local") as op:
            token = await op.request("token", "create", "--uses", str(agents), "--ttl", "1h")
            sim = _cli(env, "simulate", "--agents", str(agents), "--processes", str(processes), "--profile", "cpu",
                       "--join", token["join"], "--sample-interval", "30", "--batch-interval", "30",
                       "--state-dir", str(tmp / "sim"), "--ramp", str(max(1.0, agents / 250)),
                       "--files-root", str(roots), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await op.request("wait", "--live", str(agents), "--timeout", "600s")
            await asyncio.sleep(2)
            rtt = await _rtt_centrality(op)
            proc = psutil.Process(server.pid)
            workers = [psutil.Process(sim.pid), *psutil.Process(sim.pid).children(recursive=True)]
            rss0 = proc.memory_info().rss
            times, cpus, agent_cpus, peaks, left_live = [], [], [], [], []
            for _ in range(reps):
                for d in roots.iterdir():
                    (d / "payload.bin").unlink(missing_ok=True)
                peak = [rss0]
                not_live = set()
                stop = asyncio.Event()

                async def sample():
                    while not stop.is_set():
                        peak[0] = max(peak[0], proc.memory_info().rss)
                        machines = await op.request("machines", "ls")
                        not_live.update(m["name"] for m in machines if m["state"] != "live")
                        await asyncio.sleep(0.5)

                sampler = asyncio.ensure_future(sample())
                c0, a0 = cpu_seconds([proc]), cpu_seconds(workers)
                t0 = time.monotonic()
                r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "centrality_cli", "cp", "--json",
                                                             "--all", "--yes", str(payload), ":/payload.bin"],
                                            env=env, cwd=str(ROOT), capture_output=True)
                times.append(time.monotonic() - t0)
                cpus.append(cpu_seconds([proc]) - c0)
                agent_cpus.append(cpu_seconds(workers) - a0)
                stop.set()
                await sampler
                assert r.returncode == 0, r.stderr[-1000:]
                peaks.append(peak[0])
                left_live.append(len(not_live))
                sizes = [(d / "payload.bin").stat().st_size for d in roots.iterdir()]
                assert len(sizes) == agents and set(sizes) == {size_mb << 20}, set(sizes)
                sample_dir = sorted(roots.iterdir())[len(sizes) // 2]
                assert hashlib.sha256((sample_dir / "payload.bin").read_bytes()).hexdigest() == digest
            for d in roots.iterdir():
                (d / "payload.bin").unlink(missing_ok=True)
        return {"agents": agents, "size_mb": size_mb, "seconds": [round(x, 2) for x in times],
                "median_s": round(statistics.median(times), 2),
                "server_cpu_s_median": round(statistics.median(cpus), 2),
                "agents_cpu_s_median": round(statistics.median(agent_cpus), 2),
                "server_rss_before_mb": round(rss0 / 2**20), "server_rss_peak_mb": round(max(peaks) / 2**20),
                "machines_left_live": max(left_live), "keystroke_ms": rtt}
    finally:
        for p in (sim, server):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _summary_ms(times: list[float]) -> dict:
    return {"median": round(statistics.median(times) * 1000, 2), "p95": round(_percentile(times, 0.95) * 1000, 2),
            "p99": round(_percentile(times, 0.99) * 1000, 2)}


async def _rtt_centrality(op) -> dict:
    machines = await op.request("machines", "ls")
    name = sorted(m["name"] for m in machines)[0]
    writer, reader, _ = await op.connection.open_session(f"ssh {name}", term_type="xterm", term_size=(80, 24),
                                                         request_pty="force", encoding="utf-8")
    try:
        return _summary_ms(await _keystrokes(writer, reader, KEYSTROKES))
    finally:
        writer.close()


async def baseline(hosts: int, sshds: int, fanout: int, size_mb: int, reps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.sshd import start_sshd

    servers = [start_sshd(f"127.0.0.{2 + i}") for i in range(sshds)]
    dest = Path(tempfile.mkdtemp(prefix="centrality-bench-sftp-"))
    payload = dest / "payload.bin"
    with open(payload, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    try:
        key = asyncssh.read_private_key(str(servers[0].client_key_path))
        home = Path(tempfile.mkdtemp(prefix="centrality-bench-home-"))
        for s in servers:
            if s is not servers[0]:
                Path(s.workdir / "authorized_keys").write_text(Path(servers[0].workdir / "authorized_keys").read_text())
            with open(s.workdir / "sshd_config", "a") as f:
                f.write(f"SetEnv HOME={home}\n")  # sftp: the fixture already runs internal-sftp
            s.process.send_signal(signal.SIGHUP)
        for s in servers:
            for _ in range(100):
                try:
                    async with asyncssh.connect(s.host, s.port, username=s.user, client_keys=[key],
                                                known_hosts=None, agent_path=None) as conn:
                        await conn.run("true", check=True)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        rtt = await _rtt_direct(servers[0], key)
        sem = asyncio.Semaphore(fanout)
        failures = []
        out = dest / "hosts"
        out.mkdir()

        async def one(i: int) -> None:
            s = servers[i % len(servers)]
            async with sem:
                try:
                    async with asyncssh.connect(s.host, s.port, username=s.user, client_keys=[key],
                                                known_hosts=None, agent_path=None,
                                                encryption_algs=["aes128-gcm@openssh.com"]) as conn:
                        async with conn.start_sftp_client() as sftp:
                            await sftp.put(str(payload), str(out / f"host{i:05d}.bin"))
                except (OSError, asyncssh.Error) as exc:
                    failures.append(str(exc))

        times, cpus, client_cpus = [], [], []
        here = psutil.Process()
        sshd_procs = [psutil.Process(s.process.pid) for s in servers]
        for _ in range(reps):
            c0, h0 = cpu_seconds([here, *sshd_procs]), cpu_seconds([here])
            t0 = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(hosts)))
            times.append(time.monotonic() - t0)
            client_cpus.append(cpu_seconds([here]) - h0)
            await asyncio.sleep(0.5)
            cpus.append(cpu_seconds([here, *sshd_procs]) - c0)
            for f in out.iterdir():
                f.unlink()
        return {"hosts": hosts, "fanout": fanout, "sshd_processes": sshds, "failures": len(failures),
                "failure_sample": failures[:3], "seconds": [round(x, 2) for x in times],
                "median_s": round(statistics.median(times), 2),
                "total_cpu_s_median": round(statistics.median(cpus), 2),
                "client_cpu_s_median": round(statistics.median(client_cpus), 2), "keystroke_ms": rtt}
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(dest, ignore_errors=True)


async def _rtt_direct(s, key) -> dict:
    async with asyncssh.connect(s.host, s.port, username=s.user, client_keys=[key], known_hosts=None,
                                agent_path=None) as conn:
        writer, reader, _ = await conn.open_session(term_type="xterm", term_size=(80, 24), encoding="utf-8")
        try:
            return _summary_ms(await _keystrokes(writer, reader, KEYSTROKES))
        finally:
            writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--size-mb", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--fanout", type=int, default=64)
    ap.add_argument("--sshd", type=int, default=8)
    ap.add_argument("--baseline-reps", type=int, default=1)
    args = ap.parse_args()
    ours = asyncio.run(centrality_side(args.agents, args.processes, args.size_mb, args.reps))
    base = asyncio.run(baseline(args.agents, args.sshd, args.fanout, args.size_mb, args.baseline_reps))
    speedup = base["median_s"] / ours["median_s"]
    k_ours, k_base = ours["keystroke_ms"], base["keystroke_ms"]
    total_gb = args.agents * args.size_mb / 1024
    md = (
        f"## `cp` of {args.size_mb} MB to {args.agents} machines vs SFTP with a new connection per host; "
        "shell keystrokes\n\n"
        f"{args.agents} agents (`centrality simulate --files-root`, {args.processes} processes, each machine "
        "writing under its own directory) hold their channels open to one `centrality server`. Ours: the whole "
        f"`centrality cp --all --yes FILE :/payload.bin` command, {args.size_mb} MiB of random bytes, every "
        "machine writing, fsyncing, checking the SHA-256 and renaming (sizes of all and the SHA-256 of one "
        f"checked after). Baseline: {args.agents} hosts played by {args.sshd} OpenSSH `sshd` processes; a "
        "client (asyncssh in one process, cheaper than forking `scp` per host) opens a new connection per "
        f"host and SFTP-puts the file, {args.fanout} at a time. Everything (control plane, agents, sshds, "
        f"{total_gb:.1f} GiB of writes) shares this 2-core box; medians.\n\n"
        "| | machines | time | CPU of the sending side | CPU of the receivers | control plane RSS before / peak "
        "| machines that left live |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"| `centrality cp` (whole command) | {args.agents} | **{ours['median_s']:.1f} s** | "
        f"{ours['server_cpu_s_median']:.1f} s (control plane) | {ours['agents_cpu_s_median']:.1f} s (agents) | "
        f"{ours['server_rss_before_mb']} / {ours['server_rss_peak_mb']} MB | {ours['machines_left_live']} |\n"
        f"| SFTP, new connection per host, fan-out {args.fanout} | {args.agents} | **{base['median_s']:.1f} s** | "
        f"{base['client_cpu_s_median']:.1f} s (client) | "
        f"{base['total_cpu_s_median'] - base['client_cpu_s_median']:.1f} s (sshds) | | |\n\n"
        f"Speed-up: **{speedup:.1f}x** (baseline failures: {base['failures']}).\n\n"
        "Keystroke round trip (one byte to a shell's PTY and its echo back, "
        f"{KEYSTROKES} times, on an idle fleet):\n\n"
        "| path | median | p95 | p99 |\n| --- | --- | --- | --- |\n"
        f"| `ssh NAME` through the control plane (operator -> control plane -> agent -> PTY) | "
        f"{k_ours['median']} ms | {k_ours['p95']} ms | {k_ours['p99']} ms |\n"
        f"| direct ssh to a local sshd | {k_base['median']} ms | {k_base['p95']} ms | {k_base['p99']} ms |\n"
    )
    command = "python -m bench.copy_fanout " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("copy_fanout", command.strip(), {"centrality": ours, "baseline": base,
                                                  "speedup": round(speedup, 2)}, md)


if __name__ == "__main__":
    main()
