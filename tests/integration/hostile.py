"""A hand-driven agent connection for tests that play the attacker.

``RawAgent`` speaks the agent protocol frame by frame over a real SSH
connection: it sends exactly what a test gives it (valid messages with hostile
content, or raw bytes) and returns what the control plane answers, with none
of the real agent's checks or retries in between.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from centrality_core import protocol as p
from centrality_core import sshlink


def new_key():
    import asyncssh

    return asyncssh.generate_private_key("ssh-ed25519")


class RawAgent:
    def __init__(self, conn, writer, frames) -> None:
        self.conn, self.writer, self.frames = conn, writer, frames
        self.seq = 0

    @classmethod
    async def connect(cls, cp, key=None, *, enrolling: bool = False) -> "RawAgent":
        """Log in with ``key`` (a new one by default) and open the agent subsystem."""
        conn = await sshlink.connect(cp.address, cp.fingerprint, key or new_key(),
                                     username=p.ENROLL_USER if enrolling else "agent")
        writer, reader, _ = await conn.open_session(subsystem=p.AGENT_SUBSYSTEM, encoding=None)
        return cls(conn, writer, p.StreamFrames(reader))

    def send(self, msg: p.Message | bytes) -> None:
        self.writer.write(msg if isinstance(msg, bytes) else p.encode(msg))

    async def recv(self, timeout: float = 10.0) -> p.Message | None:
        frame = await asyncio.wait_for(self.frames.next(), timeout)
        return None if frame is None else p.server_decoder.decode(frame)

    async def hello(self, name: str, info: dict, *, token: str | None = None, labels=None) -> p.Message:
        self.send(p.Hello(protocol=p.PROTOCOL_VERSION, name=name, info=msgspec.convert(info, p.MachineInfo),
                          labels=labels or {}, join_token=token))
        return await self.recv()

    async def batch(self, keys: list[str], *, ts: list[float] | None = None, text=None) -> p.MetricsAck:
        """Send one packed batch (value = key index) and wait for its ack."""
        self.seq += 1
        ts = ts if ts is not None else [time.time()]
        columns = [[float(i)] * len(ts) for i in range(len(keys))]
        self.send(p.MetricsBatch(stream="hostile", seq=self.seq, ts=ts, keys=keys,
                                 values=p.pack_values(columns), text=text or {}))
        while True:
            msg = await self.recv()
            if isinstance(msg, p.MetricsAck) or msg is None:
                return msg

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()
