"""CPU per message over one SSH channel, with asyncssh's ignore packet before each data
packet (asyncssh alone) and without it (``centrality_core.sshpackets``, what Centrality
runs): docs/performance.md, "One packet per message".

A real asyncssh server and client in one process on 127.0.0.1, the link's algorithms
(``sshlink.algorithms``: aes128-gcm), ``--messages`` messages of ``--bytes`` bytes sent
one at a time (each its own packet, as a fleet's agents send them); CPU of both ends
together, per message, until the server has read them all. Rounds alternate the two
ways; the table has the median and the range.

    python -m bench.ssh_packets --messages 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncssh

from centrality_core import sshpackets
from centrality_core.sshlink import algorithms

from . import report


class _Open(asyncssh.SSHServer):
    def begin_auth(self, username):
        return False


async def _one(messages: int, size: int) -> float:
    got, done = 0, asyncio.Event()

    async def count(proc):
        nonlocal got
        while data := await proc.stdin.read(65536):
            got += data.count(b"\n")
            if got >= messages:
                done.set()

    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(_Open, "127.0.0.1", 0, server_host_keys=[key], process_factory=count,
                                          encoding=None, **algorithms())
    port = server.sockets[0].getsockname()[1]
    async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="agent", agent_path=None,
                                config=None, **algorithms()) as conn:
        proc = await conn.create_process(encoding=None)
        line = b"x" * (size - 1) + b"\n"
        cpu0 = time.process_time()
        for _ in range(messages):
            proc.stdin.write(line)
            await asyncio.sleep(0)  # let the channel send it on its own
        await done.wait()
        cpu = time.process_time() - cpu0
    server.close()
    await server.wait_closed()
    return cpu / messages * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--bytes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"asyncssh alone": [], "without the ignore packet": []}
    for _ in range(args.rounds):
        for way, runs_of in runs.items():
            (sshpackets.uninstall if way == "asyncssh alone" else sshpackets.install)()
            runs_of.append(round(asyncio.run(_one(args.messages, args.bytes)), 1))
    rows = "\n".join(f"| {way} | {statistics.median(r)} µs | {min(r)}-{max(r)} µs |" for way, r in runs.items())
    markdown = (
        "## One packet per message (`bench/ssh_packets.py`)\n\n"
        f"{args.messages:,} messages of {args.bytes} bytes over one SSH channel, one at a time, aes128-gcm; "
        "CPU of the server and the client together (one process, 127.0.0.1), per message; "
        f"{args.rounds} rounds, alternating.\n\n"
        "| asyncssh | CPU per message, median | range |\n| --- | --- | --- |\n" + rows)
    report.write("ssh_packets", f"python -m bench.ssh_packets --messages {args.messages} --rounds {args.rounds}",
                 runs, markdown)


if __name__ == "__main__":
    main()
