"""Metric ingest: samples per second into SQLite and Postgres, and the control
plane's CPU per sample.

A real ``centrality server`` runs in its own process. This process enrols N
agents over SSH (each its own key, joined with a token) and makes each send
metric batches (5 samples x K keys, the agent's default shape) as fast as
acknowledgements come back, with at most W batches in flight per agent. The
control plane's CPU time is read from /proc; a sample counts when its batch
is acknowledged, i.e. durably stored.

    python -m bench.ingest --backend sqlite --backend postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil

from centrality_core import protocol as p
from centrality_core import sshlink

from . import report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoadAgent:
    def __init__(self, index: int, keys: list[str], window: int) -> None:
        self.index, self.keys, self.window = index, keys, window
        self.acked_samples = 0
        self.in_flight: asyncio.Semaphore = asyncio.Semaphore(window)
        self.conn = None

    async def connect(self, address: str, fingerprint: str, token: str) -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.conn = await sshlink.connect(address, fingerprint, key, username=p.ENROLL_USER)
        self.writer, reader, _ = await self.conn.open_session(subsystem=p.AGENT_SUBSYSTEM, encoding=None)
        self.frames = p.StreamFrames(reader)
        info = p.MachineInfo(hostname=f"bench-{self.index:05d}", cpu_count=16, memory_total_bytes=64 << 30)
        self.writer.write(p.encode(p.Hello(protocol=p.PROTOCOL_VERSION, name=f"bench-{self.index:05d}",
                                           info=info, join_token=token)))
        reply = p.server_decoder.decode(await self.frames.next())
        assert isinstance(reply, p.Registered), reply

    async def receive(self) -> None:
        while (frame := await self.frames.next()) is not None:
            msg = p.server_decoder.decode(frame)
            if isinstance(msg, p.MetricsAck):
                self.acked_samples += 5
                self.in_flight.release()

    async def send(self, stop: asyncio.Event) -> None:
        seq, rng = 0, random.Random(self.index)
        while not stop.is_set():
            await self.in_flight.acquire()
            seq += 1
            now = time.time()
            ts = [now - 4 + i for i in range(5)]
            columns = [[rng.random() * 100 for _ in ts] for _ in self.keys]
            self.writer.write(p.encode(p.MetricsBatch(stream="bench", seq=seq, ts=ts, keys=self.keys,
                                                      columns=columns)))


async def run_one(backend: str, db_url: str, agents: int, seconds: float, nkeys: int, window: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="centrality-bench-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp / "data")}
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")})
    port = free_port()
    log = tmp / "server.log"
    server = subprocess.Popen([sys.executable, "-m", "centrality_cli", "server", "--listen", f"127.0.0.1:{port}",
                               "--db", db_url, "--heartbeat-interval", "5s", "--limbo-after", "60s"],
                              env=env, stderr=open(log, "wb"))  # a file: an unread pipe would block it
    try:
        while b"listening on" not in log.read_bytes():
            if server.poll() is not None:
                raise RuntimeError(f"control plane exited:\n{log.read_text()}")
            await asyncio.sleep(0.1)
        from centrality_core.client import OperatorClient

        async with OperatorClient("local") as op:
            token = (await op.request("token", "create", "--uses", str(agents)))
        keys = ([f"cpu[{i}].percent" for i in range(nkeys - 6)]
                + ["cpu.percent", "mem.used_bytes", "mem.total_bytes", "mem.percent",
                   "fs[/].percent", "net[eth0].recv_bytes_per_s"])
        load = [LoadAgent(i, keys, window) for i in range(agents)]
        js = token["join"]
        from centrality_core import joinstring

        secret = joinstring.decode(js).t
        for i in range(0, agents, 50):
            await asyncio.gather(*(a.connect(f"127.0.0.1:{port}", token["fingerprint"], secret)
                                   for a in load[i:i + 50]))
        stop = asyncio.Event()
        receivers = [asyncio.ensure_future(a.receive()) for a in load]
        senders = [asyncio.ensure_future(a.send(stop)) for a in load]
        await asyncio.sleep(2)  # warm up
        proc = psutil.Process(server.pid)
        cpu0, acked0, t0 = sum(proc.cpu_times()[:2]), sum(a.acked_samples for a in load), time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1)
            rss.append(proc.memory_info().rss)
        cpu1, acked1, t1 = sum(proc.cpu_times()[:2]), sum(a.acked_samples for a in load), time.monotonic()
        stop.set()
        for t in senders + receivers:
            t.cancel()
        for a in load:
            a.conn.close()
        samples = acked1 - acked0
        wall = t1 - t0
        return {
            "backend": backend, "agents": agents, "keys_per_sample": nkeys, "window": window,
            "seconds": round(wall, 1), "samples": samples,
            "samples_per_s": round(samples / wall),
            "values_per_s": round(samples * nkeys / wall),
            "batches_per_s": round(samples / 5 / wall),
            "server_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
            "server_cpu_us_per_sample": round(1e6 * (cpu1 - cpu0) / max(samples, 1), 1),
            "server_rss_mb": round(max(rss) / 2**20, 1),
        }
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--keys", type=int, default=40, help="values per sample")
    ap.add_argument("--window", type=int, default=4, help="batches in flight per agent")
    args = ap.parse_args()
    backends = args.backend or ["sqlite", "postgres"]
    results = []
    pg = None
    try:
        for backend in backends:
            if backend == "postgres":
                sys.path.insert(0, str(report.ROOT))
                from tests.fixtures.postgres import start_postgres

                pg = start_postgres()
                url = pg.url()
            else:
                url = f"sqlite:///{tempfile.mkdtemp(prefix='centrality-bench-db-')}/bench.db"
            results.append(asyncio.run(run_one(backend, url, args.agents, args.seconds, args.keys, args.window)))
    finally:
        if pg is not None:
            pg.stop()
    rows = "\n".join(
        f"| {r['backend']} | {r['agents']} | {r['samples_per_s']:,} | {r['values_per_s']:,} | "
        f"{r['server_cpu_percent']} % | {r['server_cpu_us_per_sample']} µs | {r['server_rss_mb']} MB |"
        for r in results)
    md = ("## Metric ingest (samples/s stored, control-plane CPU per sample)\n\n"
          f"Agents send batches of 5 samples x {args.keys} values as fast as acknowledgements allow "
          f"({args.window} batches in flight each); a sample counts once its batch is stored and acknowledged. "
          "The load generator shares the machine, so throughput is bounded by both sides; the figure to "
          "compare is CPU per sample.\n\n"
          "| store | agents | samples/s | values/s | control-plane CPU | CPU per sample | RSS |\n"
          "| --- | --- | --- | --- | --- | --- | --- |\n" + rows)
    command = "python -m bench.ingest " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.write("ingest", command.strip(), {"runs": results}, md)


if __name__ == "__main__":
    main()
