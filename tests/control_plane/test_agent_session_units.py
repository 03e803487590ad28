"""AgentSession with its channel already closing (pure: stand-ins for the channel and peer)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from centrality_core import protocol as p
from control_plane.agent_session import AgentSession


class ClosingChannel:
    """What asyncssh's channel does once the agent's CHANNEL_CLOSE is in and before
    ``connection_lost`` runs (on the next loop iteration): writes raise."""

    def write(self, data: bytes) -> None:
        raise BrokenPipeError("Channel not open for sending")


def test_an_answer_to_an_agent_whose_channel_is_closing_is_dropped_not_raised():
    """Seen in a 10,000-machine join: an agent gave up during its enrolment, and sending it
    ``Registered`` raised out of the hello task ("hello failed", an unretrieved task error)."""
    session = AgentSession(SimpleNamespace(max_frame_bytes=1 << 20),
                           SimpleNamespace(log=logging.getLogger("test")))
    session.chan = ClosingChannel()
    session.send(p.Rejected(code="busy", reason="x"))  # nothing raised
    assert session.closed is False  # connection_lost, when it comes, does the cleaning up
