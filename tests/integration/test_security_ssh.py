"""The SSH server as an attacker and an auditor see it: no agent, X11 or port
forwarding, no PTYs for requests, only audited algorithms, bounded time and
numbers of connections that have not become useful. Real OpenSSH clients, a real
ssh-agent and ssh-audit where they matter."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncssh
import pytest

from centrality_core import protocol as p
from centrality_core import sshlink
from centrality_core.errors import Busy
from tests.conftest import wait_for
from tests.integration.hostile import RawAgent, new_key


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if os.environ.get("CENTRALITY_REQUIRE_SSHD"):
            pytest.fail(f"missing {missing} (CENTRALITY_REQUIRE_SSHD is set)")
        pytest.skip(f"missing {missing}")


def _operator_key(home: Path) -> Path:
    return home / ".config" / "centrality" / "keys" / "operator_ed25519"


def _ssh(cp, home: Path, *args: str) -> list[str]:
    port = cp.address.rsplit(":", 1)[1]
    return ["ssh", "-p", port, "-i", str(_operator_key(home)), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            *args, "127.0.0.1"]


@pytest.fixture
def ssh_agent(tmp_path):
    """A real ssh-agent; yields its environment."""
    _require("ssh", "ssh-agent", "ssh-add")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists():
            break
        import time
        time.sleep(0.05)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait(5)


async def test_openssh_agent_forwarding_is_refused(control_plane, home, ssh_agent, tmp_path, monkeypatch):
    listed = subprocess.run(["ssh-add", str(_operator_key(home))], env=ssh_agent, capture_output=True)
    assert listed.returncode == 0, listed.stderr
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a forwarded agent socket would appear
    proc = await asyncio.create_subprocess_exec(
        *_ssh(control_plane, home, "-A", "-o", "ForwardAgent=yes", "-v"), "wait", "--live", "99",
        "--timeout", "3s", env=ssh_agent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # while the request runs, the connection is open: no agent socket exists for it
    await wait_for(lambda: any(h.role == "operator" for h in control_plane.connections), what="operator in")
    await asyncio.sleep(0.5)
    for handler in control_plane.connections:
        assert handler.conn.get_agent_path() is None
    assert list(spool.iterdir()) == []
    out, err = await proc.communicate()
    assert proc.returncode == 124, err  # the request itself ran (and timed out as asked)
    assert b"Requesting authentication agent forwarding" in err  # the client did ask


async def test_openssh_port_forwarding_x11_and_ptys_are_refused(control_plane, home):
    _require("ssh")
    # a remote forward: refused, and ssh says so
    proc = await asyncio.create_subprocess_exec(
        *_ssh(control_plane, home, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"), "status",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0 and b"remote port forwarding failed" in err.lower()

    # a local forward to a listening port: nothing ever reaches it
    reached = []
    target = await asyncio.start_server(lambda r, w: reached.append(w.close()), "127.0.0.1", 0)
    tport = target.sockets[0].getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *_ssh(control_plane, home, "-L", f"{lport}:127.0.0.1:{tport}", "-v"), "wait", "--live", "99",
        "--timeout", "3s", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await wait_for(lambda: any(h.role == "operator" for h in control_plane.connections), what="operator in")
    for _ in range(50):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", lport)
            break
        except OSError:
            await asyncio.sleep(0.1)
    assert await asyncio.wait_for(r.read(), 10) == b""  # closed at once: nothing relayed
    w.close()
    out, err = await proc.communicate()
    target.close()
    assert b"open failed" in err and reached == []

    # X11: refused, the request still answers
    proc = await asyncio.create_subprocess_exec(
        *_ssh(control_plane, home, "-X"), "status", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "DISPLAY": ":0"})
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert b"X11 forwarding request failed" in err
    assert proc.returncode == 0 and json.loads(out)["version"]
    # a PTY: no request needs one, so none is granted (-tt makes that fatal for ssh)
    proc = await asyncio.create_subprocess_exec(
        *_ssh(control_plane, home, "-tt"), "status", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert b"PTY allocation request failed" in err


async def test_ssh_audit_finds_no_failure(control_plane):
    audit = shutil.which("ssh-audit") or str(Path(sys.executable).with_name("ssh-audit"))
    if not Path(audit).exists():
        pytest.fail("ssh-audit is not installed (it is in the test extra)")
    port = control_plane.address.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(audit, "-j", "-p", port, "127.0.0.1",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    report = json.loads(out)
    failures = [(section, alg["algorithm"], alg["notes"]["fail"])
                for section in ("kex", "key", "enc", "mac") for alg in report[section]
                if alg.get("notes", {}).get("fail")]
    assert failures == []
    assert report["compression"] == ["none"]
    assert report["cves"] == []
    names = {a["algorithm"] for section in ("kex", "enc", "mac") for a in report[section]}
    for bad in ("diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256",
                "mlkem768nistp256-sha256", "hmac-sha1", "hmac-sha1-etm@openssh.com", "hmac-sha2-256"):
        assert bad not in names
    # its connection-rate (DHEat) test: the per-source limit holds
    assert not [n for n in report.get("additional_notes", []) if "connection throttling" in n]
    assert proc.returncode != 3, err  # 3: failure


@pytest.fixture
def tight(control_plane):
    """Small per-source limits and a 1 s login grace on the running control plane."""
    gate = control_plane.admission
    control_plane.connections.login_grace = 1.0  # what each new connection is given
    gate.rate, gate.burst, gate.max_enrolling = 2.0, 3, 2
    gate._buckets.clear()
    return control_plane


async def test_a_connection_that_never_registers_is_closed_after_the_login_grace(tight):
    cp = tight
    # an unknown key logs in to enrol, and then does nothing at all
    conn = await sshlink.connect(cp.address, cp.fingerprint, new_key(), username=p.ENROLL_USER)
    await asyncio.wait_for(conn.wait_closed(), 5)
    # a TCP client that never even finishes the SSH handshake
    await asyncio.sleep(0.6)  # let the bucket refill
    r, w = await asyncio.open_connection(*cp.address.rsplit(":", 1))
    assert (await r.readline()).startswith(b"SSH-2.0-")
    await asyncio.wait_for(r.read(), 5)  # read to the end: the server closed it
    w.close()
    # a registered agent is not affected
    await asyncio.sleep(0.6)
    raw = await RawAgent.connect(cp, enrolling=True)
    token = await cp.auth.create_token(ttl=60, uses=1, actor="t", address=cp.address)
    from agent_runtime.collectors.simulated import fake_machine_info
    from centrality_core import joinstring
    reg = await raw.hello("graceful-1", fake_machine_info("cpu", 1), token=joinstring.decode(token["join"]).t)
    assert isinstance(reg, p.Registered)
    for i in range(8):  # past the grace, heartbeating: still connected
        raw.send(p.Heartbeat(seq=i, ts=0.0))
        await asyncio.sleep(0.25)
    assert cp.registry.fleet.get("graceful-1").state.value == "live"
    await raw.close()


def _hold_write_lock(store_url: str, seconds: float):
    """Another client holding the SQLite store's write lock for ``seconds`` (a thread): what a
    store busy with a join storm does to an enrolment (it waits, within the busy timeout)."""
    import sqlite3
    import threading

    assert store_url.startswith("sqlite:///")  # this module runs on SQLite
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        threading.Event().wait(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(10)
    return t


async def test_a_registration_slower_than_the_login_grace_is_not_cut_off(tight, store_url):
    """The grace is for clients that never say hello; once one has, a slow store is the control
    plane's own delay, and closing would only make the agent redo its handshake."""
    from agent_runtime.collectors.simulated import fake_machine_info
    from centrality_core import joinstring

    cp = tight
    token = await cp.auth.create_token(ttl=60, uses=1, actor="t", address=cp.address)
    raw = await RawAgent.connect(cp, enrolling=True)
    holder = _hold_write_lock(store_url, 2.5)  # past the 1 s grace
    reg = await asyncio.wait_for(raw.hello("slow-store-1", fake_machine_info("cpu", 1),
                                           token=joinstring.decode(token["join"]).t), 20)
    assert isinstance(reg, p.Registered), reg
    await asyncio.to_thread(holder.join, 10)
    assert cp.registry.fleet.get("slow-store-1").state.value == "live"
    await raw.close()


async def test_enrolling_connections_per_source_are_bounded(tight):
    cp = tight
    cp.admission.rate = 0  # only the enrolling bound here
    held = [await sshlink.connect(cp.address, cp.fingerprint, new_key(), username=p.ENROLL_USER)
            for _ in range(2)]
    third = await sshlink.connect(cp.address, cp.fingerprint, new_key(), username=p.ENROLL_USER)
    await asyncio.wait_for(third.wait_closed(), 5)
    assert cp.admission.refused["enrolling"] == 1
    for c in held:
        c.close()
    await wait_for(lambda: cp.admission.enrolling("127.0.0.1") == 0, what="enrolling slots freed")


async def test_connection_rate_per_source_is_limited_before_the_ssh_greeting(tight):
    cp = tight
    outcomes = []
    for _ in range(8):
        try:
            c = await sshlink.connect(cp.address, cp.fingerprint, new_key(), username=p.ENROLL_USER)
            outcomes.append("in")
            c.close()
        except Busy as exc:
            outcomes.append("busy")
            assert "too many connections from this address" in exc.reason
    assert outcomes[:3] == ["in"] * 3 and outcomes.count("busy") >= 4
    assert cp.admission.refused["rate"] >= 4
    # raw TCP past the limit gets no SSH greeting at all
    r, w = await asyncio.open_connection(*cp.address.rsplit(":", 1))
    assert await asyncio.wait_for(r.read(), 5) == b""
    w.close()


async def test_unknown_key_asking_for_an_operator_request_is_told_why(control_plane):
    conn = await sshlink.connect(control_plane.address, control_plane.fingerprint, new_key(),
                                 username=p.ENROLL_USER)
    async with conn:
        r = await conn.run("machines ls", check=False, encoding="utf-8")
    assert r.exit_status == 6
    err = json.loads(r.stderr)
    assert err["error"] == "forbidden" and "not enrolled" in err["reason"]
    assert "agent keys" not in err["reason"]


async def test_a_changed_host_key_does_not_silently_repin_the_local_context(home, store_url, caplog):
    from centrality_core import contexts
    from centrality_core.settings import resolve_server
    from control_plane.server import HOST_KEY_FILE, ControlPlane

    settings = resolve_server({"listen": "127.0.0.1:0", "db": store_url})
    cp = ControlPlane(settings)
    await cp.start()
    first = cp.fingerprint
    await cp.stop()
    (settings.server_dir() / HOST_KEY_FILE).unlink()  # the host key changes
    cp = ControlPlane(settings)
    await cp.start()
    try:
        assert cp.fingerprint != first
        assert contexts.load().contexts["local"].fingerprint == first  # still the pinned one
        assert any("pins host key" in r.getMessage() and cp.fingerprint in r.getMessage()
                   for r in caplog.records)
    finally:
        await cp.stop()
