"""The floor: bare asyncssh connections carrying the same bytes as agents.

``server`` accepts any key and answers each newline-terminated message with a
short acknowledgement line, doing nothing else. ``clients`` opens N
connections (one channel each) and writes a message of B bytes every
interval, like an agent sending a metrics batch. What the server costs here
is what SSH alone costs for the control plane's traffic.

``storm`` is the floor of a reconnect storm: N handshakes (each with a session
channel opened, as an agent's), at most ``--concurrency`` at a time, as fast as
both sides allow; it prints one JSON line with the time they took and the
client's CPU.

    python -m bench.floor server --port 2222
    python -m bench.floor clients --port 2222 --count 1000 --bytes 9000
    python -m bench.floor storm --port 2222 --count 1000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import signal
import sys

import asyncssh

from centrality_core import sshlink
from centrality_core.runtime import use_uvloop

ACK = b'{"kind":"metrics_ack","stream":"0123456789abcdef","seq":123}\n'


class _Session(asyncssh.SSHServerSession):
    def connection_made(self, chan):
        self.chan = chan

    def subsystem_requested(self, subsystem):
        return True

    def data_received(self, data, datatype):
        for _ in range(data.count(b"\n")):
            self.chan.write(ACK)

    def eof_received(self):
        return False


class AcceptAll(asyncssh.SSHServer):
    """A bare server that lets any key in (the floor has no key cache)."""

    def begin_auth(self, username):
        return True

    def public_key_auth_supported(self):
        return True

    def validate_public_key(self, username, key):
        return True


class _Server(AcceptAll):
    def session_requested(self):
        return _Session()


async def serve(port: int) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(_Server, "127.0.0.1", port, server_host_keys=[key], encoding=None,
                                          line_editor=False, encryption_algs=sshlink.CIPHERS)
    print(f"floor listening {key.get_fingerprint('sha256')}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


async def clients(port: int, count: int, size: int, interval: float, ramp: float) -> None:
    message = b"x" * (size - 1) + b"\n"
    rng = random.Random(0)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    connected = 0

    async def one(i: int) -> None:
        nonlocal connected
        await asyncio.sleep(rng.uniform(0, ramp))
        key = asyncssh.generate_private_key("ssh-ed25519")
        conn = await asyncssh.connect("127.0.0.1", port, username="x", client_keys=[key], known_hosts=None,
                                      encryption_algs=sshlink.CIPHERS, agent_path=None, config=None)
        writer, reader, _ = await conn.open_session(subsystem="floor", encoding=None)
        connected += 1
        drain = asyncio.ensure_future(_drain(reader))
        await asyncio.sleep(rng.uniform(0, interval))
        while not stop.is_set():
            writer.write(message)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
        drain.cancel()
        conn.close()

    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except asyncio.TimeoutError:
            print(f"floor clients connected {connected}/{count}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)


async def storm(port: int, count: int, concurrency: int) -> None:
    """``count`` handshakes, ``concurrency`` at a time; print what they took."""
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(min(count, 64))]
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with gate:
            try:
                conn = await asyncssh.connect("127.0.0.1", port, username="x", client_keys=[keys[i % len(keys)]],
                                              known_hosts=None, encryption_algs=sshlink.CIPHERS, agent_path=None,
                                              config=None)
                await conn.open_session(subsystem="floor", encoding=None)
            except (OSError, asyncssh.Error):
                failed += 1
                return
        opened.append(conn)

    opened: list = []
    cpu0, t0 = os.times(), time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    took, cpu1 = time.monotonic() - t0, os.times()
    print(json.dumps({"count": count, "failed": failed, "seconds": round(took, 2),
                      "client_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2)}), flush=True)
    for conn in opened:
        conn.close()


async def _drain(reader) -> None:
    while await reader.read(65536):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["server", "clients", "storm"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--bytes", type=int, default=9000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=64, help="storm: handshakes in progress at once")
    args = ap.parse_args()
    use_uvloop()
    if args.role == "server":
        asyncio.run(serve(args.port))
    elif args.role == "storm":
        asyncio.run(storm(args.port, args.count, args.concurrency))
    else:
        asyncio.run(clients(args.port, args.count, args.bytes, args.interval, args.ramp))
    sys.exit(0)


if __name__ == "__main__":
    main()
