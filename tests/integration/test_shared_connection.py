"""Shared connections (``CENTRALITY_PERSIST``, ``centrality_core/sharing.py``) with the
real CLI in subprocesses, its real master process and a real control plane over SSH:
the commands after the first ride one connection and answer exactly as direct ones;
the master goes away when idle, with the control plane, on ``disconnect`` and after
kill -9; other users and hostile clients get nothing from it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.conftest import FAST, REPO, cli_env, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def store_url(tmp_path) -> str:
    """SQLite only: sharing is the client's business, the store plays no part in it."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def runtime():
    """A short private runtime dir (Unix socket paths hold ~104 bytes; pytest's are long)."""
    path = Path(tempfile.mkdtemp(prefix="centrality-rt-"))
    yield path
    for p in masters(path):
        p.kill()
    shutil.rmtree(path, ignore_errors=True)


def share_env(home: Path, runtime: Path, persist: str = "30s") -> dict:
    return {**cli_env(home), "CENTRALITY_PERSIST": persist, "XDG_RUNTIME_DIR": str(runtime)}


async def run(env: dict, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrality_cli", *args, env=env, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def masters(runtime: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if "centrality_cli.sharemaster" in cmd and str(runtime) in cmd:
            found.append(p)
    return found


def sockets(runtime: Path) -> list[Path]:
    d = runtime / "centrality"
    return [p for p in d.iterdir() if p.is_socket()] if d.is_dir() else []


async def master_up(runtime: Path) -> psutil.Process:
    """The master a command left, once it listens."""
    await wait_for(lambda: sockets(runtime) and masters(runtime), timeout=20, what="the master to listen")
    [master] = masters(runtime)
    return master


def as_nobody(path: Path) -> bytes:
    """What a request for a join token gets from the master, asked by uid 65534 (a forked child)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python objects of the parent touched beyond this
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(path))
            body = json.dumps({"argv": ["token", "create"]}).encode()
            try:
                s.sendall(b"C" + len(body).to_bytes(4, "big") + body)
                os.write(w, b"answer:" + s.recv(100))
            except (ConnectionResetError, BrokenPipeError):  # closed before the request was read
                os.write(w, b"answer:")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, f"error:{exc!r}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read()
    os.waitpid(pid, 0)
    assert said.startswith(b"answer:"), said
    return said[len(b"answer:"):]


def ran(caplog) -> list[tuple[int, str]]:
    """(connection number, request) of each request the control plane ran, in order."""
    out = []
    for r in caplog.records:
        m = re.search(r"\[conn=(\d+)\] .* ran '([^']*)' ->", r.getMessage())
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


async def test_commands_after_the_first_ride_one_connection_and_answer_as_direct_ones(
        control_plane, agents, home, runtime, caplog):
    caplog.set_level(logging.INFO, "centrality.ssh")
    await agents("gpu-01")
    env = share_env(home, runtime)
    direct_ls = await run(cli_env(home), "machines", "ls", "--json")
    direct_missing = await run(cli_env(home), "machines", "show", "nosuch")
    direct_events = await run(cli_env(home), "events", "--machine", "gpu-01", "--json")

    assert (await run(env, "status", "--json"))[0] == 0  # connects itself, leaves a master
    await master_up(runtime)
    before = len(ran(caplog))
    shared_ls = await run(env, "machines", "ls", "--json")
    shared_missing = await run(env, "machines", "show", "nosuch")
    shared_events = await run(env, "events", "--machine", "gpu-01", "--json")
    again = await run(env, "machines", "ls")

    assert shared_missing == direct_missing and shared_missing[0] == 9
    assert "no machine named 'nosuch'" in shared_missing[2]
    assert shared_events == direct_events and shared_events[0] == 0
    assert shared_ls[0] == direct_ls[0] == 0
    strip = lambda text: [{k: v for k, v in m.items() if k not in ("heartbeat_age_s", "last_heartbeat")}
                          for m in json.loads(text)]
    assert strip(shared_ls[1]) == strip(direct_ls[1]) and strip(shared_ls[1])[0]["name"] == "gpu-01"
    assert again[0] == 0 and "gpu-01" in again[1] and "live" in again[1]
    requests = ran(caplog)
    first_conn = requests[before - 1][0]
    shared = requests[before:]
    assert [r for _, r in shared] == ["machines ls", "machines show nosuch", "events --limit 100 --machine gpu-01",
                                      "machines ls"]
    assert len({conn for conn, _ in shared}) == 1 and shared[0][0] != first_conn


async def test_the_master_leaves_when_idle_and_on_disconnect(control_plane, home, runtime):
    env = share_env(home, runtime, persist="1s")
    assert (await run(env, "status"))[0] == 0
    master = await master_up(runtime)
    await wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE, timeout=15,
                   what="the idle master to exit")
    await wait_for(lambda: not sockets(runtime), what="its socket to go")

    env = share_env(home, runtime, persist="10m")
    assert (await run(env, "status"))[0] == 0
    master = await master_up(runtime)
    code, out, _ = await run(env, "disconnect")
    assert code == 0 and out.strip() == "shared connection closed"
    await wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE, timeout=10,
                   what="the master to exit")
    assert not sockets(runtime)
    code, out, _ = await run(env, "disconnect")
    assert code == 0 and out.strip() == "no shared connection open"


async def test_the_master_leaves_with_the_control_plane_and_the_next_command_connects_itself(home, runtime,
                                                                                           tmp_path):
    from centrality_core.settings import resolve_server
    from control_plane.server import ControlPlane

    settings = {"listen": "127.0.0.1:0", "db": f"sqlite:///{tmp_path / 'store.db'}", **FAST}
    cp = ControlPlane(resolve_server(settings))
    await cp.start()
    env = share_env(home, runtime)
    try:
        assert (await run(env, "status"))[0] == 0
        master = await master_up(runtime)
    finally:
        await cp.stop()
    await wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE, timeout=15,
                   what="the master to exit with the control plane")
    await wait_for(lambda: not sockets(runtime), what="its socket to go")
    cp = ControlPlane(resolve_server({**settings, "listen": cp.address}))
    await cp.start()
    try:
        code, out, err = await run(env, "status", "--json")
        assert code == 0 and json.loads(out)["healthy"] is True, err
        await master_up(runtime)  # and it left a new master
    finally:
        await cp.stop()


async def test_a_master_killed_with_sigkill_is_replaced(control_plane, home, runtime, caplog):
    caplog.set_level(logging.INFO, "centrality.ssh")
    env = share_env(home, runtime)
    assert (await run(env, "status"))[0] == 0
    old = await master_up(runtime)
    old.send_signal(signal.SIGKILL)
    await wait_for(lambda: not old.is_running() or old.status() == psutil.STATUS_ZOMBIE, what="the kill")
    assert sockets(runtime)  # stale: nobody listens on it any more
    code, out, err = await run(env, "machines", "ls", "--json")
    assert code == 0 and json.loads(out) == [], err
    new = await master_up(runtime)
    assert new.pid != old.pid
    assert (await run(env, "machines", "ls", "--json"))[0] == 0
    last_two = ran(caplog)[-2:]
    assert last_two[0][0] != last_two[1][0]  # the first after the kill connected itself; then the new master


async def test_no_sharing_through_a_directory_others_can_enter(control_plane, home, runtime):
    (runtime / "centrality").mkdir(mode=0o700)
    (runtime / "centrality").chmod(0o755)
    env = share_env(home, runtime)
    for _ in range(2):
        code, out, err = await run(env, "status", "--json")
        assert code == 0 and json.loads(out)["healthy"] is True, err
    await asyncio.sleep(1.0)
    assert not masters(runtime) and not sockets(runtime)


async def test_hostile_clients_get_nothing_and_the_master_goes_on(control_plane, home, runtime, caplog):
    caplog.set_level(logging.INFO, "centrality.ssh")
    env = share_env(home, runtime)
    assert (await run(env, "status"))[0] == 0
    await master_up(runtime)
    [path] = sockets(runtime)
    from centrality_core import sharing

    for garbage in [b"\x00" * 3, b"Z\x00\x00\x00\x02hi", sharing.frame(b"C", b"not json"),
                    sharing.frame(b"C", json.dumps({"argv": []}).encode()),
                    sharing.frame(b"C", json.dumps({"argv": ["status", 7]}).encode()),
                    b"C\xff\xff\xff\xff"]:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(garbage)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing run, nothing said
        writer.close()
    assert (await run(env, "status"))[0] == 0
    requests = ran(caplog)
    assert [r for _, r in requests[-2:]] == ["status", "status"]  # no garbage reached the control plane


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
async def test_another_user_is_refused_even_when_the_socket_is_reachable(control_plane, home, runtime, caplog):
    caplog.set_level(logging.INFO, "centrality.ssh")
    env = share_env(home, runtime)
    assert (await run(env, "status"))[0] == 0
    master = await master_up(runtime)
    [path] = sockets(runtime)
    path.parent.chmod(0o711)  # as if the directory check had been got round: the master still checks
    path.chmod(0o666)
    runtime.chmod(0o711)
    asked = len(ran(caplog))
    assert await asyncio.to_thread(as_nobody, path) == b""  # closed without a word
    assert len(ran(caplog)) == asked  # nothing ran
    assert master.is_running()
    assert "refused a client of uid 65534" in next(path.parent.glob("*.log")).read_text()


async def test_login_persist_saves_sharing_in_the_context(control_plane, home, runtime):
    env = {**cli_env(home), "XDG_RUNTIME_DIR": str(runtime)}  # no CENTRALITY_PERSIST: the context says
    code, _, err = await run(env, "login", control_plane.address, "--fingerprint", control_plane.fingerprint,
                             "--name", "prod", "--persist", "soon")
    assert code == 3 and "persist 'soon' is not a duration" in err
    assert (await run(env, "--context", "prod", "status"))[0] == 3  # nothing was saved
    code, out, err = await run(env, "login", control_plane.address, "--fingerprint", control_plane.fingerprint,
                               "--name", "prod", "--persist", "1m")
    assert code == 0 and "logged in" in out, err
    assert (await run(env, "--context", "prod", "status"))[0] == 0
    await master_up(runtime)
    assert (await run(env, "--context", "local", "status"))[0] == 0  # another context: not shared
    await asyncio.sleep(0.5)
    assert len(masters(runtime)) == 1
    code, out, _ = await run({**env, "CENTRALITY_PERSIST": "0"}, "--context", "prod", "disconnect")
    assert out.strip() == "shared connection closed"


async def test_a_master_that_ran_nothing_is_left_and_one_that_broke_off_is_an_error(control_plane, runtime,
                                                                                   monkeypatch):
    """A stand-in master on the context's socket: one that answers "not run" (its connection
    gone) makes the client connect itself and get the real answer; one that goes away after
    part of an answer is an error, not a retry (the request may have run)."""
    from centrality_core import sharing
    from centrality_core.client import OperatorClient
    from centrality_core.errors import ConnectError

    monkeypatch.setenv("CENTRALITY_PERSIST", "1m")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    probe = OperatorClient(share=True)
    sock, _ = probe._shared_socket()
    answers = [sharing.frame(sharing.NOT_RUN, b"the shared connection is closed"),
               sharing.frame(sharing.STDOUT, b'{"healthy": tr')]

    async def stand_in(reader, writer):
        await sharing.read_frame(reader)
        writer.write(answers.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(stand_in, path=str(sock))
    try:
        monkeypatch.setattr(sharing, "start_master", lambda *a: None)  # the stand-in stays the master
        async with OperatorClient(share=True) as client:
            assert client.shared
            status = (await client.status()).data
            assert status["healthy"] is True and not client.shared  # asked over its own connection
        async with OperatorClient(share=True) as client:
            with pytest.raises(ConnectError, match="shared connection lost during 'status'"):
                await client.status()
    finally:
        server.close()
