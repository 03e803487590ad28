"""Operators and handshakes before agents' traffic when the event loop runs late.

One event loop serves every connection. Each iteration reads every socket
that has data, and the control plane handles what it read there and then:
decrypting and dispatching the SSH packets, decoding metric batches, rollups.
With a fleet's traffic filling the loop (a backlog being replayed after a
storm, a box short of CPU), an iteration takes a second or more, and every
round trip of a handshake waits for one: an operator's ``status`` needs about
ten (version, key exchange, authentication, channel, request), so it took
2-23 s, or ended at the login grace, on a control plane busy with 10,000
simulated agents catching up after their first join on 2 shared cores
(docs/performance.md, 2026-12-03).

So the loop watches how late its own timer runs. When it is ``late`` and a
connection that is not a registered agent is open (an operator, a dashboard,
a replica, a handshake in progress), the sockets of registered agents stop
being read for ``pause`` seconds: the kernel keeps their bytes (TCP flow
control then slows their senders), and the iterations meanwhile are short,
so the others' round trips go through. Then they are read again, everything
they sent is handled as usual, and the loop looks again after one more of
its iterations. Nothing is dropped or reordered: only the moment each byte is
read moves. When only agents are connected nothing pauses: there would be no
one to make room for, and the fleet's throughput is all that matters then.

Reading is paused at the transport (``asyncio.Transport.pause_reading``), the
only place where it stops the work: an SSH channel's own ``pause_reading``
still lets its connection read, decrypt and buffer up to the channel's window.
asyncssh does not hand its transport to the application; ``transport_of``
takes it from the connection, and when it cannot (another asyncssh) nothing
is paused and the control plane runs as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

#: How late the loop's timer may run (seconds) before agents' reads pause for the others.
LATE = 0.25
#: How long they pause each time (seconds): several round trips of a handshake on a quiet loop.
PAUSE = 0.2


@dataclass
class ReadPriority:
    """Whether agents' reads should pause now: pure, no sockets."""

    late: float = LATE
    pause: float = PAUSE
    lag: float = 0.0       # how late the loop's last timer ran (seconds)
    pauses: int = 0        # in all, for status
    paused_for: float = 0.0

    def pause_for(self, lag: float, others: Callable[[], int]) -> float:
        """Seconds to stop reading registered agents now (0: not now), given how late the
        loop's last timer ran and (asked only when it is late) how many open connections
        are not registered agents."""
        self.lag = lag
        if lag < self.late or others() == 0:
            return 0.0
        self.pauses += 1
        self.paused_for += self.pause
        return self.pause


def transport_of(conn) -> asyncio.Transport | None:
    """The socket transport under an asyncssh connection, if it can be paused."""
    transport = getattr(conn, "_transport", None)
    if transport is None or not hasattr(transport, "pause_reading") or transport.is_closing():
        return None
    return transport


@contextlib.contextmanager
def paused(conns: Iterable) -> Iterator[int]:
    """Stop reading the connections' sockets for the ``with`` block (yields how many);
    each is read again at its end, unless it was closed meanwhile."""
    transports = []
    try:
        for conn in conns:
            transport = transport_of(conn)
            if transport is not None and transport.is_reading():
                transport.pause_reading()
                transports.append(transport)
        yield len(transports)
    finally:
        for transport in transports:
            with contextlib.suppress(RuntimeError):  # closed meanwhile (uvloop raises then)
                if not transport.is_closing():
                    transport.resume_reading()
