"""sshpackets: asyncssh's empty ignore packet before each data packet is left out with the
ciphers Centrality negotiates, kept with a CBC cipher; real asyncssh server and client on
127.0.0.1, ignore packets counted where they are received."""

from __future__ import annotations

import asyncio
import collections

import asyncssh
import pytest
from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE

from centrality_core import sshpackets
from centrality_core.sshlink import algorithms

MESSAGES = 50


@pytest.fixture
def ignores(monkeypatch):
    """Ignore packets received, by the side that received them ("server"/"client")."""
    counts: collections.Counter = collections.Counter()
    stock = SSHConnection.log_received_packet  # asyncssh logs every packet it receives, by type

    def counting(self, pkttype, pktid, packet, note=""):
        if pkttype == MSG_IGNORE:
            counts["server" if self.is_server() else "client"] += 1
        return stock(self, pkttype, pktid, packet, note)

    monkeypatch.setattr(SSHConnection, "log_received_packet", counting)
    yield counts
    sshpackets.uninstall()


class Open(asyncssh.SSHServer):
    def begin_auth(self, username):
        return False


async def echo_round_trips(**algs) -> tuple[list[bytes], str]:
    async def echo(proc):
        while line := await proc.stdin.readline():
            proc.stdout.write(b"ok " + line)
        proc.exit(0)

    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(Open, "127.0.0.1", 0, server_host_keys=[key], process_factory=echo,
                                          encoding=None, **algs)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="agent", agent_path=None,
                                    config=None, **algs) as conn:
            proc = await conn.create_process(encoding=None)
            answers = []
            for i in range(MESSAGES):  # one message at a time: each is its own packet, as a fleet sends them
                proc.stdin.write(b"batch %d\n" % i)
                answers.append(await proc.stdout.readline())
            cipher = conn.get_extra_info("send_cipher")
            proc.stdin.write_eof()
            await proc.wait()
        return answers, cipher
    finally:
        server.close()
        await server.wait_closed()


def test_no_ignore_packets_with_centralitys_ciphers_and_every_message_arrives(ignores):
    sshpackets.install()
    sshpackets.install()  # idempotent
    answers, cipher = asyncio.run(echo_round_trips(**algorithms()))
    assert cipher == "aes128-gcm@openssh.com"
    assert answers == [b"ok batch %d\n" % i for i in range(MESSAGES)]
    assert ignores["server"] == 0 and ignores["client"] == 0


def test_asyncssh_alone_sends_one_before_each_message(ignores):
    answers, _ = asyncio.run(echo_round_trips(**algorithms()))
    assert len(answers) == MESSAGES
    assert ignores["server"] >= MESSAGES and ignores["client"] >= MESSAGES  # what install() saves


def test_a_cbc_connection_keeps_its_ignore_packets(ignores):
    sshpackets.install()
    answers, cipher = asyncio.run(echo_round_trips(encryption_algs=["aes128-cbc"], mac_algs=["hmac-sha2-256"]))
    assert cipher == "aes128-cbc" and len(answers) == MESSAGES
    assert ignores["server"] >= MESSAGES and ignores["client"] >= MESSAGES


@pytest.mark.parametrize("cipher,needed", [("aes128-gcm@openssh.com", False), ("aes256-gcm@openssh.com", False),
                                           ("chacha20-poly1305@openssh.com", False), ("aes128-ctr", False),
                                           ("aes256-ctr", False), ("aes128-cbc", True), ("3des-cbc", True),
                                           ("", True)])
def test_needs_ignore(cipher, needed):
    assert sshpackets.needs_ignore(cipher) is needed
