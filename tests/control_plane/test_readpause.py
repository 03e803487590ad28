"""When agents' reads pause for the others (readpause.py): the policy, and the pause on
real socket transports."""

from __future__ import annotations

import asyncio
import socket

import pytest

from control_plane.readpause import LATE, PAUSE, ReadPriority, paused, transport_of


def test_agents_pause_only_when_the_loop_is_late_and_someone_else_is_connected():
    asked = []

    def others(n):
        return lambda: asked.append(n) or n

    rp = ReadPriority()
    assert rp.pause_for(LATE / 2, others(3)) == 0.0
    assert asked == []  # on time: the connections are not even counted
    assert rp.pause_for(LATE, others(0)) == 0.0  # late, but only agents: nobody to make room for
    assert rp.pause_for(2.0, others(1)) == PAUSE
    assert rp.pause_for(5.0, others(4)) == PAUSE
    assert (rp.pauses, rp.paused_for, rp.lag) == (2, 2 * PAUSE, 5.0)


class _Conn:  # what transport_of looks at on an asyncssh connection
    def __init__(self, transport):
        self._transport = transport


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])  # the server runs on uvloop
def test_paused_connections_keep_their_bytes_and_get_them_after_in_order(loop_kind):
    if loop_kind == "uvloop":
        loop = pytest.importorskip("uvloop").new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_pause_and_resume(loop))
    finally:
        loop.close()


async def _pause_and_resume(loop):
    received: list[bytes] = []

    class Reader(asyncio.Protocol):
        def data_received(self, data):
            received.append(data)

    a, b = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(Reader, a)
    gone, gone_peer = socket.socketpair()
    closed, _ = await loop.connect_accepted_socket(Reader, gone)
    try:
        conns = [_Conn(transport), _Conn(closed), _Conn(None), object()]
        with paused(conns) as n:
            assert n == 2 and not transport.is_reading()
            closed.close()  # a connection that goes away meanwhile is not read again
            b.sendall(b"one ")
            b.sendall(b"two")
            await asyncio.sleep(0.1)
            assert received == []  # in the kernel's buffer, not read
        assert transport.is_reading()
        for _ in range(100):
            if b"".join(received) == b"one two":
                break
            await asyncio.sleep(0.01)
        assert b"".join(received) == b"one two"
        assert transport_of(_Conn(closed)) is None
    finally:
        transport.close()
        b.close()
        gone_peer.close()
