"""An operator context (and an agent) naming several control-plane addresses:
the first that answers is used, a host that never answers costs a few seconds,
not the whole timeout, and when none answers the error names each one."""

from __future__ import annotations

import json
import socket
import time

import pytest

from centrality_core import contexts, sshlink
from centrality_core.client import OperatorClient
from tests.conftest import cli
from tests.integration.test_processes import free_port


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def blackhole():
    """An address whose TCP connects hang: a listener whose one-slot backlog is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the accept queue; later SYNs are dropped and retried
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(address)
        fillers.append(s)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(address)
        pytest.skip("this kernel accepted a connect past a full backlog")
    except (socket.timeout, TimeoutError):
        pass
    finally:
        probe.close()
    yield f"127.0.0.1:{address[1]}"
    for s in fillers:
        s.close()
    listener.close()


def _context(name: str, address: str, cp) -> None:
    _, local = contexts.resolve("local")
    contexts.put(name, contexts.Context(address=address, fingerprint=cp.fingerprint, key=local.key))


async def test_a_context_with_several_addresses_uses_the_first_that_answers(control_plane, home, blackhole,
                                                                           monkeypatch):
    down = f"127.0.0.1:{free_port()}"
    _context("replicas", f"{down},{control_plane.address}", control_plane)
    status, out, err = await cli(home, "--context", "replicas", "status", "--json")
    assert status == 0, err
    assert json.loads(out)["fingerprint"] == control_plane.fingerprint

    monkeypatch.setattr(sshlink, "TCP_TIMEOUT", 1.0)
    _context("slow", f"{blackhole},{control_plane.address}", control_plane)
    t0 = time.monotonic()
    async with OperatorClient("slow") as client:
        assert client.address == control_plane.address
        assert (await client.request("status"))["version"]
    assert time.monotonic() - t0 < 5, "the host that never answers held the connect"

    _context("none", f"{down},{blackhole}", control_plane)
    status, out, err = await cli(home, "--context", "none", "status", "--json", timeout=60)
    assert status == 4
    doc = json.loads(out)
    assert doc["error"] == "unreachable"
    assert f"cannot reach any of {down}, {blackhole}" in doc["reason"]
    assert f"cannot reach {down}: connection refused" in doc["reason"]
    assert f"cannot reach {blackhole}: no answer within 5s" in doc["reason"]


async def test_a_context_whose_every_address_has_another_host_key_is_a_mismatch(control_plane, home):
    other = f"127.0.0.1:{free_port()}"
    _, local = contexts.resolve("local")
    wrong = "SHA256:" + "A" * 43
    contexts.put("wrong", contexts.Context(address=f"{control_plane.address},{control_plane.address}",
                                           fingerprint=wrong, key=local.key))
    status, out, err = await cli(home, "--context", "wrong", "status", "--json")
    assert status == 5, err
    assert f"expected {wrong}, the server presented {control_plane.fingerprint}" in json.loads(out)["reason"]
    # One address down, the other with a key not pinned: unreachable, saying both (the agent retries this).
    contexts.put("mixed", contexts.Context(address=f"{other},{control_plane.address}", fingerprint=wrong,
                                           key=local.key))
    status, out, _ = await cli(home, "--context", "mixed", "status", "--json")
    assert status == 4
    assert "connection refused" in out and "host key mismatch" in out


async def test_login_with_several_addresses(control_plane, home):
    down = f"127.0.0.1:{free_port()}"
    status, out, err = await cli(home, "login", f"{down}, {control_plane.address}", "--fingerprint",
                                 control_plane.fingerprint, "--name", "pair")
    assert status == 0, err
    assert f"logged in to {down},{control_plane.address} as context 'pair'" in out
    ctx = contexts.load().contexts["pair"]
    assert (ctx.address, ctx.fingerprint) == (f"{down},{control_plane.address}", control_plane.fingerprint)
    # Without --fingerprint, every address is scanned (trust on first use): one down is an error.
    status, _, err = await cli(home, "login", f"{control_plane.address},{down}", "--name", "tofu")
    assert status == 4 and f"cannot reach {down}" in err
    status, _, err = await cli(home, "login", f"{control_plane.address},{control_plane.address}", "--name", "tofu")
    assert status == 0, err
    assert contexts.load().contexts["tofu"].address == control_plane.address  # the same address twice is one


async def test_token_create_for_a_replica_set(control_plane, home):
    from centrality_core import joinstring

    other = "SHA256:" + "B" * 43
    status, out, err = await cli(home, "token", "create", "--address", "cp1:8022, cp2:8022", "--pin", other,
                                 "--json")
    assert status == 0, err
    js = joinstring.decode(json.loads(out)["join"])
    assert js.addresses == ["cp1:8022", "cp2:8022"]
    assert js.fingerprints == [control_plane.fingerprint, other]
    status, _, err = await cli(home, "token", "create", "--address", "cp1:8022,cp2:port")
    assert status == 2 and "invalid address 'cp2:port'" in err
    status, _, err = await cli(home, "token", "create", "--pin", "MD5:aa")
    assert status == 2 and "invalid host-key fingerprint 'MD5:aa'" in err
    # `agent join` keeps them all.
    status, out, _ = await cli(home, "token", "create", "--address", f"{control_plane.address},cp2:8022")
    status, out, err = await cli(home, "agent", "join", out.strip(), "--config-dir", str(home / "agent"))
    assert status == 0, err
    assert f'address = "{control_plane.address},cp2:8022"' in (home / "agent/agent.toml").read_text()
