"""``ssh`` and ``cp`` on a machine another replica holds, relayed through that replica
(control_plane/peer_shell.py, peer_copy.py).

Real parts throughout: ``centrality server --replica`` processes on the
fixture's Postgres, simulated machines (real agents and real shells; each
has its own ``files_root`` so that ``cp`` writes under the test's
directory), the real CLI on a real PTY, OpenSSH's own client. The operator
always talks to replica A about machines replica B holds. The last test
kills B.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import time

import asyncssh
import pytest
import pytest_asyncio

from tests.conftest import REPO
from tests.fixtures.postgres import fresh_database
from tests.fixtures.replicaset import replica_set

pexpect = pytest.importorskip("pexpect")

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.asyncio(loop_scope="module")]

N = 8
PROMPT = "READY> "


@pytest.fixture(scope="module")
def module_db(postgres_server):
    """A database for the module's replica set, dropped at the end."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tmp_path_factory.mktemp("files")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rs(tmp_path_factory, module_db, files):
    async with replica_set(tmp_path_factory.mktemp("replicas"), module_db, 2,
                           replica_lease="10", limbo_after="10") as rs:
        await rs.simulate(N, extra=("--files-root", str(files)))
        await rs.wait_live(N, timeout="120s")
        deadline = time.monotonic() + 60
        while set(rs.holders().values()) != {"cp-a", "cp-b"} or len(rs.holders()) < N:
            assert time.monotonic() < deadline, rs.holders()
            await asyncio.sleep(0.5)
        yield rs


def on_b(rs) -> list[str]:
    return sorted(n for n, r in rs.holders().items() if r == "cp-b")


def spawn(rs, argv: list[str], *, rows: int = 24, cols: int = 80, term: str = "vt220"):
    env = {**rs.env(rs.replicas[0].home), "TERM": term}
    return pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(REPO), dimensions=(rows, cols),
                         encoding="utf-8", codec_errors="replace", timeout=20)


async def expect(child, pattern, timeout: float = 20):
    return await asyncio.to_thread(child.expect, pattern, timeout=timeout)


async def finished(child, timeout: float = 20) -> int:
    await expect(child, pexpect.EOF, timeout)
    await asyncio.to_thread(child.wait)
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


async def shell_ready(child) -> None:
    await expect(child, r"[#$>] ")
    for _ in range(5):
        child.send(f"PS1='{PROMPT[:3]}''{PROMPT[3:]}'\r")
        if await expect(child, [PROMPT, pexpect.TIMEOUT], timeout=5) == 0:
            return
    pytest.fail("no prompt from the remote shell")


def centrality(*args: str) -> list[str]:
    return [sys.executable, "-m", "centrality_cli", *args]


async def audit(rs, i: int = 0) -> list[dict]:
    status, out, err = await rs.cli(i, "audit", "--json", "--limit", "1000")
    assert status == 0, err
    return json.loads(out)


def ssh_session(rs, name: str):
    """`centrality ssh NAME` in a real terminal; its exit status printed after it."""
    return spawn(rs, ["bash", "--norc", "--noprofile", "-c",
                      " ".join(centrality("ssh", name)) + '; echo "status=$?"'])


async def test_interactive_shell_on_a_machine_held_by_the_other_replica(rs):
    name = on_b(rs)[0]
    before_b = len(await audit(rs, 1))
    child = ssh_session(rs, name)
    try:
        await shell_ready(child)
        child.send("echo hello-$((6*7)) $TERM\r")
        await expect(child, "hello-42 vt220")
        await expect(child, PROMPT)
        child.send("echo machine=$CENTRALITY_MACHINE\r")
        await expect(child, f"machine={name}")
        await expect(child, PROMPT)
        child.send("stty size\r")
        await expect(child, "24 80")
        await expect(child, PROMPT)
        child.setwinsize(40, 132)  # CLI -> replica A -> replica B -> agent
        for _ in range(50):
            child.send("stty size\r")
            i = await expect(child, ["40 132", "24 80"])
            await expect(child, PROMPT)
            if i == 0:
                break
        else:
            pytest.fail("the remote PTY never got the new window size")
        child.send("exit 7\r")
        await expect(child, "status=7")
        assert await finished(child) == 0
    finally:
        child.terminate(force=True)

    rows = [r for r in await audit(rs) if r["argv"] == ["ssh", name]]
    assert rows and rows[0]["actor"].startswith("operator:") and rows[0]["exit_code"] == 7
    assert rows[0]["results"][name]["status"] == "failed" and rows[0]["status"] == "done"
    # The peer's part is recorded by no one but replica A (one shared audit table).
    assert len(await audit(rs, 1)) == before_b + 1


async def test_a_command_with_stdin_piped_and_its_exit_status(rs):
    name = on_b(rs)[0]
    data = b"".join(b"line %d\n" % i for i in range(20000))  # ~200 KB through both relays
    proc = await asyncio.create_subprocess_exec(
        *centrality("ssh", name, "--", "sha256sum; tty; exit 3"), env=rs.env(rs.replicas[0].home), cwd=str(REPO),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(data), 30)
    assert proc.returncode == 3, err
    assert out.decode().splitlines() == [f"{hashlib.sha256(data).hexdigest()}  -", "not a tty"]


async def test_a_large_output_arrives_whole(rs):
    name = on_b(rs)[0]
    status, out, err = await rs.cli(0, "ssh", name, "--", "head -c 8000000 /dev/zero | tr '\\0' x; echo")
    assert status == 0, err
    assert out == "x" * 8_000_000 + "\n"


async def test_openssh_logged_in_as_a_machine_held_by_the_other_replica(rs):
    name = on_b(rs)[0]
    argv = openssh(rs, name, None, "-t")
    child = spawn(rs, argv, term="xterm")
    try:
        await shell_ready(child)
        child.send("echo via-openssh-$((1+1)) $TERM\r")
        await expect(child, "via-openssh-2 xterm")
        await expect(child, PROMPT)
        child.send("exit 5\r")
        assert await finished(child) == 5
    finally:
        child.terminate(force=True)

    proc = await asyncio.create_subprocess_exec(
        *openssh(rs, name, 'echo "a  b"; tty; exit 4'), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 4, err
    assert out.decode().splitlines() == ["a  b", "not a tty"]


def openssh(rs, user: str, command: str | None, *opts: str) -> list[str]:
    home = rs.replicas[0].home
    key = home / ".config" / "centrality" / "keys" / "operator_ed25519"
    host_key = asyncssh.read_private_key(
        str(home / ".local" / "share" / "centrality" / "server" / "ssh_host_ed25519_key"))
    host, port = rs.replicas[0].address.rsplit(":", 1)
    known = home / "known_hosts"
    known.write_text(f"[{host}]:{port} {host_key.export_public_key().decode().strip()}\n")
    return ["ssh", "-F", "none", "-p", port, "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-l", user, *opts, host, *([command] if command is not None else [])]


async def test_drained_refused_without_force_as_on_the_holding_replica(rs):
    name = on_b(rs)[-1]
    status, out, err = await rs.cli(0, "machines", "drain", name, "--reason", "bad fan")
    assert status == 0, err
    try:
        status, out, err = await rs.cli(0, "ssh", name, "--", "true")
        assert status == 10 and f"{name} is drained (bad fan)" in err, err
        status, out, err = await rs.cli(0, "ssh", "--force", name, "--", "echo forced")
        assert (status, out) == (0, "forced\n"), err
    finally:
        await rs.cli(0, "machines", "undrain", name)


async def test_cp_put_and_get_a_multi_megabyte_file_both_ways(rs, files, tmp_path):
    theirs = on_b(rs)[:2]
    ours = sorted(n for n, r in rs.holders().items() if r == "cp-a")[0]
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(6 * 2**20 + 12345))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()

    status, out, err = await rs.cli(0, "cp", str(local), f"{theirs[0]}:/blob.bin", "--json")
    assert status == 0, (out, err)
    doc = json.loads(out)
    assert doc["machines"][theirs[0]]["status"] == "ok" and doc["machines"][theirs[0]]["sha256"] == digest
    on_disk = files / theirs[0] / "blob.bin"
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == digest

    # one here and two held by B in one push: one stream, one summary
    status, out, err = await rs.cli(0, "cp", str(local), *theirs, f"{ours}:/blob2.bin", "--json")
    assert status == 0, err
    doc = json.loads(out)
    assert {n: m["status"] for n, m in doc["machines"].items()} == {n: "ok" for n in [*theirs, ours]}
    assert doc["counts"] == {"ok": 3} and doc["bytes"] == 3 * local.stat().st_size
    for n in [*theirs, ours]:
        assert hashlib.sha256((files / n / "blob2.bin").read_bytes()).hexdigest() == digest

    got = tmp_path / "got"
    status, out, err = await rs.cli(0, "cp", *theirs, f"{ours}:/blob2.bin", str(got), "--json")
    assert status == 0, err
    for n in [*theirs, ours]:
        assert hashlib.sha256((got / n / "blob2.bin").read_bytes()).hexdigest() == digest

    rows = [r for r in await audit(rs) if r["argv"][:2] == ["cp", "get"]]
    assert rows[0]["actor"].startswith("operator:") and sorted(rows[0]["results"]) == sorted([*theirs, ours])
    assert len([r for r in await audit(rs) if r["argv"] == ["cp", "get", "/blob2.bin"]]) == 1


async def test_a_holding_replica_that_does_not_answer_is_said_so(rs, tmp_path):
    name = on_b(rs)[0]
    local = tmp_path / "f"
    local.write_text("x")
    os.kill(rs.replicas[1].proc.pid, signal.SIGSTOP)  # alive to the kernel (and its lease), silent
    try:
        t0 = time.monotonic()
        (s1, out1, err1), (s2, out2, err2) = await asyncio.gather(
            rs.cli(0, "ssh", name, "--", "true"), rs.cli(0, "cp", str(local), f"{name}:/f", "--json"))
        took = time.monotonic() - t0
    finally:
        os.kill(rs.replicas[1].proc.pid, signal.SIGCONT)
    assert s1 == 10, (out1, err1)
    assert f"{name} is held by replica cp-b at {rs.replicas[1].address}, which this replica cannot reach" in err1
    assert "connect there" in err1
    doc = json.loads(out2)
    assert s2 == 1 and doc["counts"] == {} and doc["skipped"][0]["machine"] == name
    assert re.search(r"which this replica cannot reach \(.*5s\); connect there", doc["skipped"][0]["reason"])
    assert took < 15, took


async def test_the_holding_replica_killed_mid_session_ends_the_operators_session(rs):
    name = on_b(rs)[0]
    child = ssh_session(rs, name)
    try:
        await shell_ready(child)
        child.send("echo alive-$((2*2))\r")
        await expect(child, "alive-4")
        await expect(child, PROMPT)
        await rs.kill(1)
        t0 = time.monotonic()
        await expect(child, "status=255", timeout=10)
        took = time.monotonic() - t0
        assert re.search(r"replica cp-b went away during the session", child.before), child.before
        assert took < 5, took
        await finished(child)
    finally:
        child.terminate(force=True)
