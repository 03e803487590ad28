"""When too many SSH handshakes are in progress the control plane turns new
connections away with "busy"; agents back off and retry, operator clients
retry for a while and then say so."""

from __future__ import annotations

import time

import pytest

from centrality_core.errors import Busy
from tests.conftest import cli, wait_for


async def test_busy_control_plane_turns_connections_away_and_clients_retry(control_plane, agents, home,
                                                                           monkeypatch):
    from centrality_core import client as client_module

    gate = control_plane.admission
    monkeypatch.setattr(gate, "max_handshakes", 0)  # every new connection finds it full
    monkeypatch.setattr(client_module, "BUSY_RETRY_S", 1.0)
    started = time.monotonic()
    with pytest.raises(Busy) as err:
        async with client_module.OperatorClient():
            pass
    assert "busy" in err.value.reason and err.value.exit_code == 4
    assert time.monotonic() - started >= 0.2  # it retried before giving up

    a = await agents("busy-01", index=6, wait_live=False)
    await wait_for(lambda: "busy" in (a.agent.state.last_error or "") or a.task.done(),
                   what="the agent to be turned away")
    assert not a.task.done() and not a.agent.state.registered
    assert gate.handshakes == 0  # turned-away connections are not counted

    monkeypatch.setattr(gate, "max_handshakes", 128)
    await wait_for(lambda: a.agent.state.registered, what="the agent to register once there is room")
    status, out, _ = await cli(home, "machines", "ls", "--json")
    assert status == 0 and "busy-01" in out
