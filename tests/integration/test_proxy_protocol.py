"""The PROXY protocol in front of a real control plane: the real client address for
admission and logs, and hostile headers refused before the SSH greeting.

The test plays the load balancer: it opens TCP connections from 127.0.0.1 (the
trusted proxy here) and writes the header HAProxy's ``send-proxy-v2`` would,
then speaks SSH (asyncssh over the same socket) or just reads. The real HAProxy
is in tests/integration/test_haproxy.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import asyncssh
import pytest

from centrality_core import paths
from centrality_core.client import OperatorClient
from centrality_core.settings import resolve_server
from control_plane import proxylisten
from control_plane.proxyproto import SIGNATURE_V2, encode_v2
from control_plane.server import ControlPlane
from tests.conftest import FAST, cli

BANNER = b"SSH-2.0-Centrality_"


async def _control_plane(tmp_path, **settings) -> ControlPlane:
    cp = ControlPlane(resolve_server({"listen": "127.0.0.1:0", "db": f"sqlite:///{tmp_path / 'cp.db'}",
                                      **FAST, **settings}))
    await cp.start()
    return cp


def _port(cp: ControlPlane) -> int:
    return int(cp.address.rsplit(":", 1)[1])


async def _exchange(cp: ControlPlane, *chunks: bytes, pause: float = 0.0, read_for: float = 2.0) -> bytes:
    """Write ``chunks`` (``pause`` between them), then what the control plane sent until it
    closed or ``read_for`` passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(cp))
    try:
        for i, chunk in enumerate(chunks):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(chunk)
            await writer.drain()
        got = b""
        deadline = asyncio.get_running_loop().time() + read_for
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(4096), left)
            except (asyncio.TimeoutError, ConnectionError):
                break
            if not data:
                break
            got += data
        return got
    finally:
        writer.close()


async def _ssh_through(cp: ControlPlane, header: bytes, **kw) -> asyncssh.SSHClientConnection:
    """An SSH connection to ``cp`` on a socket that first carried ``header``."""
    sock = socket.create_connection(("127.0.0.1", _port(cp)))
    sock.sendall(header)
    sock.setblocking(False)
    return await asyncssh.connect(sock=sock, known_hosts=None, **kw)


def _operator_key():
    return asyncssh.read_private_key(str(paths.config_dir() / "keys" / "operator_ed25519"))


async def test_admission_counts_the_client_the_header_names_not_the_proxy(home, tmp_path):
    """Behind one balancer, one client's storm is throttled and another client still gets in."""
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.1"], connection_burst_per_source=2,
                              connection_rate_per_source=0.01)
    try:
        storm = encode_v2(("192.0.2.7", 40000), ("10.0.0.5", 8022))
        answers = [await _exchange(cp, storm, read_for=0.5) for _ in range(3)]
        assert [a.startswith(BANNER) for a in answers] == [True, True, False]
        assert answers[2] == b""  # turned away before the greeting
        other = await _exchange(cp, encode_v2(("192.0.2.8", 40000)), read_for=0.5)
        assert other.startswith(BANNER)
        # The operator's request, through the proxy too, sees the refusal counted.
        conn = await _ssh_through(cp, encode_v2(("198.51.100.1", 50000)), username="operator",
                                  client_keys=[_operator_key()])
        async with conn:
            result = await conn.run("status --json", check=True)
        assert json.loads(result.stdout)["connections_refused"]["rate"] == 1
    finally:
        await cp.stop()


async def test_logs_name_the_client_and_the_proxy(home, tmp_path, caplog):
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.0/8"])
    try:
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        with caplog.at_level(logging.INFO, logger="centrality"):
            with pytest.raises(asyncssh.PermissionDenied):
                await _ssh_through(cp, b"PROXY TCP4 203.0.113.9 10.0.0.5 41000 8022\r\n", username="ops",
                                   client_keys=[stranger])
        refused = [r.getMessage() for r in caplog.records if "refused unknown or revoked key" in r.getMessage()]
        assert len(refused) == 1
        assert "from 203.0.113.9:41000 via 127.0.0.1:" in refused[0]
    finally:
        await cp.stop()


async def test_bytes_after_the_header_in_the_same_write_reach_ssh(home, tmp_path):
    """The client's version line glued to the header: the server answers it with its KEXINIT."""
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.1"])
    try:
        got = await _exchange(cp, encode_v2(("192.0.2.7", 40000)) + b"SSH-2.0-test\r\n", read_for=1.0)
        banner, _, rest = got.partition(b"\r\n")
        assert banner.startswith(BANNER)
        assert len(rest) > 100 and rest[5] == 20  # an SSH packet: SSH_MSG_KEXINIT
    finally:
        await cp.stop()


async def test_the_v2_signature_split_over_reads(home, tmp_path):
    """Nothing is sent while the header is incomplete; the whole of it lets SSH begin."""
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.1"])
    try:
        header = encode_v2(("192.0.2.7", 40000))
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(cp))
        for piece in (header[:5], header[5:13], header[13:20]):
            writer.write(piece)
            await writer.drain()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.2)
        writer.write(header[20:])
        assert (await asyncio.wait_for(reader.readline(), 2)).startswith(BANNER)
        writer.close()
    finally:
        await cp.stop()


@pytest.mark.parametrize("chunks, reason", [
    ((b"SSH-2.0-OpenSSH_9.2\r\n",), "an SSH client connected directly"),
    ((b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),), "no PROXY protocol header"),
    ((SIGNATURE_V2 + b"\x21\x11\xff\xff",), "65535 bytes (at most 2048 accepted)"),
    ((b"PROXY TCP4 192.0.2.7 10.0.0.5 99999 8022\r\n",), "'99999' is not a port"),
    ((b"PROXY TCP4 " + b"9" * 120,), "without CRLF within 107 bytes"),
    ((SIGNATURE_V2 + b"\x23\x11\x00\x0c" + bytes(12),), "unknown command 3"),
    ((SIGNATURE_V2[:7],), "no PROXY protocol header within 0.3s"),  # truncated, then silent
])
async def test_hostile_headers_from_the_trusted_proxy_are_refused_before_the_greeting(
        home, tmp_path, caplog, monkeypatch, chunks, reason):
    monkeypatch.setattr(proxylisten, "HEADER_TIMEOUT", 0.3)
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.1"])
    try:
        with caplog.at_level(logging.WARNING, logger="centrality.proxy"):
            got = await _exchange(cp, *chunks, read_for=2.0)
        assert got == b"", got  # not a byte of SSH
        messages = [r.getMessage() for r in caplog.records if r.name == "centrality.proxy"]
        assert len(messages) == 1 and reason in messages[0], messages
        assert messages[0].startswith("refused a connection from proxy 127.0.0.1:")
        assert cp.admission.refused["proxy_header"] == 1
        assert len(cp.connections) == 0
        # ...and the next, well-formed, connection is served.
        assert (await _exchange(cp, encode_v2(("192.0.2.7", 1)), read_for=0.5)).startswith(BANNER)
    finally:
        await cp.stop()


async def test_a_truncated_header_and_a_hang_up_leave_nothing_behind(home, tmp_path):
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.1"])
    try:
        for piece in (SIGNATURE_V2[:3], encode_v2(("192.0.2.7", 1))[:20], b"PROXY TCP4 1.2"):
            _, writer = await asyncio.open_connection("127.0.0.1", _port(cp))
            writer.write(piece)
            await writer.drain()
            writer.close()
        await asyncio.sleep(0.3)
        assert len(cp.connections) == 0 and cp.admission.handshakes == 0
    finally:
        await cp.stop()


async def test_a_header_from_an_untrusted_address_is_refused(home, tmp_path, caplog):
    """Only the configured proxies may name a source; anyone else who tries is cut off,
    and clients connecting directly are served as ever."""
    cp = await _control_plane(tmp_path, proxy_protocol_from=["127.0.0.2"])
    try:
        with caplog.at_level(logging.WARNING, logger="centrality.proxy"):
            got = await _exchange(cp, encode_v2(("192.0.2.7", 40000)), read_for=2.0)
        assert got.startswith(BANNER) and got.count(b"\n") == 1  # the greeting, then closed
        messages = [r.getMessage() for r in caplog.records if r.name == "centrality.proxy"]
        assert len(messages) == 1
        assert messages[0].startswith("refused a PROXY protocol header from 127.0.0.1:")
        assert "not a trusted proxy" in messages[0]
        async with OperatorClient() as client:  # direct, from 127.0.0.1: as without a proxy
            status = (await client.status()).data
        assert status["connections_refused"]["proxy_untrusted"] == 1
    finally:
        await cp.stop()


async def test_no_trusted_proxy_by_default(home, tmp_path):
    cp = await _control_plane(tmp_path)
    try:
        assert cp.settings.proxy_protocol_from == []
        assert (await _exchange(cp, b"PROXY TCP4 192.0.2.7 10.0.0.5 1 2\r\n", read_for=2.0)).count(b"\n") == 1
        assert cp.admission.refused["proxy_untrusted"] == 1
    finally:
        await cp.stop()


async def test_the_setting_from_flags_and_environment(home, tmp_path, monkeypatch):
    monkeypatch.setenv("CENTRALITY_PROXY_PROTOCOL_FROM", "10.0.0.5, 10.0.1.0/24")
    assert resolve_server().proxy_protocol_from == ["10.0.0.5", "10.0.1.0/24"]
    monkeypatch.delenv("CENTRALITY_PROXY_PROTOCOL_FROM")
    status, out, err = await cli(home, "server", "--listen", "127.0.0.1:0", "--proxy-protocol-from",
                                 "10.0.0.5/24")
    assert status == 3, (out, err)
    assert "proxy_protocol_from: '10.0.0.5/24' has host bits set: write 10.0.0.0/24" in err
