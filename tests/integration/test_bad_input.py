"""Bad input over real SSH: each case gets a clear error, only the offending
connection is closed, and a healthy agent connected alongside keeps working."""

from __future__ import annotations

import asyncio

import asyncssh
import msgspec
import pytest

from centrality_core import protocol as p
from centrality_core import sshlink
from centrality_core.errors import AuthRefused, HostKeyMismatch, RegistrationRefused
from tests.conftest import wait_for


class RawAgent:
    """An SSH client speaking the agent subsystem byte by byte, to misbehave on purpose."""

    def __init__(self, conn, writer, reader):
        self.conn, self.writer, self.frames = conn, writer, p.StreamFrames(reader)

    @classmethod
    async def connect(cls, cp, key, username="agent"):
        conn = await sshlink.connect(cp.address, cp.fingerprint, key, username=username)
        writer, reader, _ = await conn.open_session(subsystem=p.AGENT_SUBSYSTEM, encoding=None)
        return cls(conn, writer, reader)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def receive(self) -> p.Message | None:
        frame = await asyncio.wait_for(self.frames.next(), 5)
        return None if frame is None else p.server_decoder.decode(frame)

    async def closed(self) -> bool:
        """True once the control plane has closed this connection."""
        try:
            await asyncio.wait_for(self.conn.wait_closed(), 5)
            return True
        except asyncio.TimeoutError:
            return False


def hello(name="raw-01", protocol=p.PROTOCOL_VERSION, **info) -> bytes:
    info = {"hostname": "raw-host", "cpu_count": 4, **info}
    return p.encode(p.Hello(protocol=protocol, name=name, info=msgspec.convert(info, p.MachineInfo)))


@pytest.fixture
async def enrolled(control_plane):
    """A key enrolled as an agent key, without going through a token."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    await control_plane.auth.add_key(name="agent:raw", role="agent",
                                     public_key=key.export_public_key().decode(), actor="test")
    return key


@pytest.fixture
async def bystander(agents):
    """A healthy agent that must stay live through every bad input."""
    return await agents("bystander-01", index=7)


async def assert_bystander_fine(cp, bystander):
    m = cp.registry.fleet.get("bystander-01")
    assert m.state.value == "live" and m.conn is not None
    before = m.last_heartbeat
    await wait_for(lambda: cp.registry.fleet.get("bystander-01").last_heartbeat > before,
                   what="bystander heartbeats to continue")


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):  # protocol behaviour does not depend on the store
    return f"sqlite:///{tmp_path / 'store.db'}"


async def test_unknown_key_is_refused_with_reason(control_plane, bystander):
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(AuthRefused) as err:
        await sshlink.connect(control_plane.address, control_plane.fingerprint, stranger, username="agent")
    assert "not enrolled" in err.value.reason and stranger.get_fingerprint("sha256") in err.value.reason
    await assert_bystander_fine(control_plane, bystander)


async def test_unknown_key_cannot_register_without_token(control_plane, bystander):
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    raw = await RawAgent.connect(control_plane, stranger, username=p.ENROLL_USER)
    raw.send(hello())
    reply = await raw.receive()
    assert isinstance(reply, p.Rejected) and reply.code == "not_enrolled"
    assert await raw.closed()
    assert control_plane.auth.role_of(stranger.get_fingerprint("sha256")) is None
    await assert_bystander_fine(control_plane, bystander)


async def test_expired_token_is_refused(control_plane, agents, bystander):
    token = await control_plane.auth.create_token(ttl=0.2, uses=1, actor="test",
                                                  address=control_plane.address)
    await asyncio.sleep(0.3)
    with pytest.raises(RegistrationRefused) as err:
        a = await agents("late-01", token=token, wait_live=False)
        await asyncio.wait_for(a.task, 10)
    assert err.value.code == "token_expired"
    assert "expired" in err.value.reason and "token create" in err.value.reason
    assert control_plane.registry.fleet.get("late-01") is None
    await assert_bystander_fine(control_plane, bystander)


async def test_token_used_more_times_than_allowed(control_plane, agents, bystander):
    token = await control_plane.auth.create_token(ttl=60, uses=2, actor="test",
                                                  address=control_plane.address)
    await agents("ok-01", index=1, token=token)
    await agents("ok-02", index=2, token=token)
    with pytest.raises(RegistrationRefused) as err:
        a = await agents("third-03", index=3, token=token, wait_live=False)
        await asyncio.wait_for(a.task, 10)
    assert err.value.code == "token_used"
    assert "2 time(s)" in err.value.reason
    await assert_bystander_fine(control_plane, bystander)


async def test_token_is_presented_once_then_forgotten(control_plane, agents):
    a = await agents("once-01")
    text = (a.config_dir / "agent.toml").read_text()
    assert 'join_token = ""' in text
    a.drop()  # reconnects with its enrolled key, no token needed
    await wait_for(lambda: a.agent.state.registrations == 2, what="re-registration")


async def test_wrong_host_key_is_refused_by_the_agent(control_plane, agents, tmp_path, bystander):
    from agent_runtime import config as agent_config

    a = await agents("pinned-01", index=4)
    await a.stop()
    cfg = agent_config.load(a.config_dir)
    cfg.fingerprint = "SHA256:" + "A" * 43  # not this control plane
    agent_config.save(a.config_dir, cfg)
    with pytest.raises(HostKeyMismatch) as err:
        b = await agents(config_dir=a.config_dir, index=4, wait_live=False)
        await asyncio.wait_for(b.task, 10)
    assert control_plane.fingerprint in err.value.reason and "AAAA" in err.value.reason
    await assert_bystander_fine(control_plane, bystander)


async def test_malformed_frame_closes_only_that_connection(control_plane, enrolled, bystander):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello())
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(b'{"kind": "heartbeat", "seq": "not-a-number"\n')
    reply = await raw.receive()
    assert isinstance(reply, p.Error) and reply.code == "malformed_frame"
    assert await raw.closed()
    await wait_for(lambda: control_plane.registry.fleet.get("raw-01").state.value == "limbo",
                   what="raw agent in limbo")
    await assert_bystander_fine(control_plane, bystander)


async def test_garbage_first_frame(control_plane, enrolled, bystander):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(b"\x00\xffnot json at all\n")
    reply = await raw.receive()
    assert isinstance(reply, p.Error) and reply.code == "malformed_frame"
    assert await raw.closed()
    await assert_bystander_fine(control_plane, bystander)


async def test_oversized_frame(control_plane, enrolled, bystander):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello())
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(b'{"kind": "heartbeat", "pad": "' + b"x" * (control_plane.settings.max_frame_bytes + 10))
    reply = await raw.receive()
    assert isinstance(reply, p.Error) and reply.code == "frame_too_large"
    assert await raw.closed()
    await assert_bystander_fine(control_plane, bystander)


async def test_unknown_kind_gets_unsupported_and_connection_stays(control_plane, enrolled, bystander):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello())
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(b'{"kind": "teleport", "to": "mars"}\n')
    reply = await raw.receive()
    assert isinstance(reply, p.Unsupported) and reply.unsupported_kind == "teleport"
    m = control_plane.registry.fleet.get("raw-01")
    before = m.last_heartbeat
    await asyncio.sleep(0.01)
    raw.send(p.encode(p.Heartbeat(seq=1, ts=0.0)))
    await wait_for(lambda: control_plane.registry.fleet.get("raw-01").last_heartbeat > before,
                   what="heartbeat after unsupported")
    assert control_plane.registry.fleet.get("raw-01").state.value == "live"
    raw.conn.close()


async def test_unsupported_protocol_version(control_plane, enrolled, bystander):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(b'{"kind": "hello", "protocol": [2, 0], "who": "a future agent"}\n')
    reply = await raw.receive()
    assert isinstance(reply, p.Rejected) and reply.code == "unsupported_version"
    assert "2.0" in reply.reason and "1.x" in reply.reason
    assert await raw.closed()
    await assert_bystander_fine(control_plane, bystander)


@pytest.mark.parametrize("bad_name", ["UPPER", "has space", "-leading", "a" * 64, "x;rm -rf /", "gpu[01-02]"])
async def test_invalid_machine_name(control_plane, enrolled, bad_name):
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello(name=bad_name))
    reply = await raw.receive()
    assert isinstance(reply, p.Rejected) and reply.code == "invalid_name"
    assert "lowercase" in reply.reason
    assert await raw.closed()
    assert bad_name not in control_plane.registry.fleet.machines


async def test_invalid_name_is_refused_before_join(tmp_path, control_plane):
    from agent_runtime.main import join
    from centrality_core.errors import UsageError

    token = await control_plane.auth.create_token(ttl=60, uses=1, actor="t", address=control_plane.address)
    with pytest.raises(UsageError, match="invalid machine name"):
        join(token["join"], name="Bad Name", config_dir=tmp_path / "x")


async def test_second_live_registration_is_refused(control_plane, agents, bystander):
    """A different machine cannot take a live name; the agent stops with the reason."""
    with pytest.raises(RegistrationRefused) as err:
        a = await agents("bystander-01", index=8, wait_live=False)
        await asyncio.wait_for(a.task, 10)
    assert err.value.code == "name_in_use"
    await assert_bystander_fine(control_plane, bystander)


async def test_specs_differ_from_machine_in_limbo(control_plane, agents):
    """Over its own key, a machine whose specs changed is told which specs differ
    (by name, not by value); over another key it is only told the name is owned."""
    first = await agents("node-01", index=10)
    await first.stop()
    await wait_for(lambda: control_plane.registry.fleet.get("node-01").state.value == "limbo", what="limbo")
    with pytest.raises(RegistrationRefused) as err:
        a = await agents("node-01", index=11, wait_live=False, config_dir=first.config_dir)
        await asyncio.wait_for(a.task, 10)
    assert err.value.code == "specs_differ"
    assert "hostname" in err.value.reason and "sim-" not in err.value.reason
    with pytest.raises(RegistrationRefused) as err:
        a = await agents("node-01", index=11, wait_live=False)
        await asyncio.wait_for(a.task, 10)
    assert err.value.code == "name_owned"
    assert control_plane.registry.fleet.get("node-01").state.value == "limbo"


async def test_agent_retries_when_its_session_channel_is_refused(control_plane, agents, monkeypatch):
    """The control plane going away between authentication and the channel opening
    (asyncssh's ChannelOpenError) is a reason to reconnect, not to stop the agent."""
    from control_plane.ssh import ConnectionHandler

    a = await agents("chan-01", index=5)
    await a.stop()
    refusals = []

    def refuse(self):
        refusals.append(self.id)
        return False

    monkeypatch.setattr(ConnectionHandler, "session_requested", refuse)
    b = await agents(config_dir=a.config_dir, index=5, wait_live=False)
    await wait_for(lambda: len(refusals) >= 2 or b.task.done(), what="the agent to retry a refused channel")
    assert not b.task.done(), b.task.exception()
    assert b.agent.state.last_error and not b.agent.state.registered
    monkeypatch.undo()
    await wait_for(lambda: b.agent.state.registered, what="the agent to register once channels open again")


async def test_infinite_metric_values_are_refused_and_the_batch_can_come_back(control_plane, enrolled,
                                                                              bystander):
    """A packed value that is not finite closes the connection without moving the machine's
    cursor, so the same batch, corrected, is stored when it comes back."""
    import struct
    import time

    now = time.time()
    bad = p.MetricsBatch(stream="run1", seq=1, ts=[now], keys=["cpu.percent"],
                         values=struct.pack("<d", float("inf")))
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello())
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(p.encode(bad))
    reply = await raw.receive()
    assert isinstance(reply, p.Error) and "finite" in reply.reason
    assert await raw.closed()

    good = p.MetricsBatch(stream="run1", seq=1, ts=[now], keys=["cpu.percent"],
                          values=struct.pack("<d", 42.0))
    raw = await RawAgent.connect(control_plane, enrolled)
    raw.send(hello())
    assert isinstance(await raw.receive(), p.Registered)
    raw.send(p.encode(good))
    assert await raw.receive() == p.MetricsAck(stream="run1", seq=1)
    assert control_plane.ingest.latest["raw-01"].values == {"cpu.percent": 42.0}
    assert control_plane.ingest.duplicates == 0
    await assert_bystander_fine(control_plane, bystander)
