"""The agent link dispatches what the control plane sends through one table by
message type, as the control plane dispatches what agents send."""

from __future__ import annotations

import time
import typing

import pytest

from agent_runtime.collectors.simulated import fake_machine_info
from agent_runtime.config import AgentConfig
from agent_runtime.link import Agent
from centrality_core import protocol as p
from centrality_core.errors import ProtocolError


class Frames:
    """The channel's frames, then the end of the connection."""

    def __init__(self, *messages: p.Message) -> None:
        self.frames = [p.encode(m) for m in messages]

    async def next(self) -> bytes | None:
        return self.frames.pop(0) if self.frames else None


def agent() -> Agent:
    return Agent(AgentConfig(), key=None, info=fake_machine_info("cpu", 0, 0), name="gpu-01")


def test_every_kind_the_control_plane_sends_after_registration_has_a_handler():
    registration = {p.Registered, p.Rejected}  # the answer to the hello, read before the session
    assert set(agent()._handlers) == set(typing.get_args(p.ServerMessage)) - registration


async def test_an_ack_frees_the_outbox_and_an_error_ends_the_link():
    a = agent()
    for seq in (1, 2, 3):
        a.outbox.add(p.MetricsBatch(stream=a.stream, seq=seq, ts=[time.time()], keys=[], columns=[]))
    frames = Frames(p.MetricsAck(stream=a.stream, seq=2),
                    p.Command(id="c1", argv=["true"], timeout=1.0, max_output_bytes=10),  # no executor: ignored
                    p.Error(code="malformed_frame", reason="bad"))
    with pytest.raises(ProtocolError) as err:
        await a._receive(frames)
    assert "malformed_frame: bad" in err.value.reason
    assert [b.seq for b in a.outbox] == [3]


async def test_a_refused_batch_is_counted_with_its_reason():
    a = agent()
    a.outbox.add(p.MetricsBatch(stream=a.stream, seq=1, ts=[time.time()], keys=[], columns=[]))
    frames = Frames(p.MetricsAck(stream=a.stream, seq=1, refused="too many keys"))
    with pytest.raises(Exception, match="closed by the control plane"):
        await a._receive(frames)
    assert a.state.batches_refused == 1 and a.state.last_refusal == "too many keys" and len(a.outbox) == 0
