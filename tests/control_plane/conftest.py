"""Control-plane parts built alone: a registry over the real store writer (never
flushed, so no database is touched) and a clock the test moves."""

from __future__ import annotations

import logging

import pytest

from centrality_core.lifecycle import Thresholds
from control_plane.registry import Registry
from control_plane.store import Store
from control_plane.writer import StoreWriter

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Peer:
    """What parts use of an SSH connection (``control_plane.peer.Peer``); ``closed``
    holds the reasons it was closed with."""

    def __init__(self, *, fingerprint: str, public_key: str = "", key_name: str, role: str,
                 username: str = "operator", id: int = 1) -> None:
        self.id, self.peer, self.username, self.machine, self.conn = id, "127.0.0.1:1", username, None, None
        self.via = ""
        self.fingerprint, self.public_key, self.key_name, self.role = fingerprint, public_key, key_name, role
        self.log = logging.LoggerAdapter(logging.getLogger("test"), {})
        self.closed: list[str] = []

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.key_name}"

    def settled(self) -> None:
        pass

    def close(self, reason: str = "") -> None:
        self.closed.append(reason)


class AgentLink:
    """An agent's session as the registry and runs see it: what was sent, whether it was closed."""

    def __init__(self, protocol=(1, 3)) -> None:
        self.sent = []
        self.closed = False
        self.protocol = protocol

    def send(self, msg) -> None:
        self.sent.append(msg)

    def close(self, why: str = "") -> None:
        self.closed = True


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writer(tmp_path):
    return StoreWriter(Store(f"sqlite:///{tmp_path}/unused.db"))


@pytest.fixture
def registry(writer, clock):
    return Registry(Thresholds(5.0, 15.0, 60.0), writer, clock=clock)


def register(registry: Registry, name: str, *, info: dict | None = None, labels: dict | None = None,
             link: AgentLink | None = None) -> AgentLink:
    link = link or AgentLink()
    info = info if info is not None else {"hostname": f"{name}.lab", "cpu_count": 8, "gpus": [{}, {}]}
    reg = registry.register(name, info, ("id", name), labels or {}, f"SHA256:{name}", link)
    assert reg.refusal is None
    return link
