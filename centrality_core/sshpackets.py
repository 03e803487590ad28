"""One SSH packet per message instead of two, where the second protects nothing.

asyncssh (2.x) sends an empty ``SSH_MSG_IGNORE`` packet before every packet of
the connection protocol once encryption is on. That is the old countermeasure
to the chosen-plaintext attack on SSH's CBC modes, whose next IV is the last
ciphertext block (RFC 4251 section 9.3.1): an ignore packet first makes the IV
of the packet that matters unpredictable. The counter-mode and AEAD ciphers
Centrality negotiates (``sshlink.CIPHERS``: AES-GCM, chacha20-poly1305,
AES-CTR) have no such IV, and OpenSSH sends no such packet with any cipher.

Every agent message and every acknowledgement is then two packets, each
encrypted, sent, received, decrypted and dispatched. Measured on 2 cores,
aes128-gcm, a 300-byte message a packet over one channel, both ends together:
181 us of CPU per message, 108 us without the ignore packet (medians of 5,
``bench/ssh_packets.py``).

``install()`` makes asyncssh leave the empty ignore packet out on connections
whose send cipher has no IV chaining (``needs_ignore``), and only there: a connection that
negotiated a CBC cipher (Centrality offers none; another program in the same
process might) keeps it. It wraps ``SSHConnection.send_packet``; everything
else about the packet goes through asyncssh unchanged. The tests count the
ignore packets a real asyncssh peer receives, so an asyncssh release that
changes this is noticed. ``bench/floor.py`` does not install it: the floor
stays bare asyncssh.
"""

from __future__ import annotations

from typing import Any, Callable

#: Ciphers without IV chaining between packets: AES-GCM, AES-CTR, chacha20-poly1305.
NO_IV_CHAINING_SUFFIXES = ("-gcm@openssh.com", "-ctr")
NO_IV_CHAINING_PREFIXES = ("chacha20-poly1305",)

_stock: Callable[..., Any] | None = None


def needs_ignore(cipher: str) -> bool:
    """Does a connection sending with ``cipher`` need the ignore packet before data?"""
    return not (cipher.endswith(NO_IV_CHAINING_SUFFIXES) or cipher.startswith(NO_IV_CHAINING_PREFIXES))


def install() -> None:
    """Leave asyncssh's empty ignore packet out where it protects nothing (idempotent)."""
    global _stock
    if _stock is not None:
        return
    from asyncssh.connection import SSHConnection
    from asyncssh.constants import MSG_IGNORE
    from asyncssh.packet import String

    stock = SSHConnection.send_packet
    empty = (String(b""),)

    def send_packet(self, pkttype: int, *args: bytes, handler=None) -> None:
        if pkttype == MSG_IGNORE and args == empty and not needs_ignore(self.get_extra_info("send_cipher", "")):
            return
        stock(self, pkttype, *args, handler=handler)

    _stock = stock
    SSHConnection.send_packet = send_packet


def uninstall() -> None:
    """asyncssh's own behaviour again (for tests and benchmarks that compare)."""
    global _stock
    if _stock is None:
        return
    from asyncssh.connection import SSHConnection

    SSHConnection.send_packet = _stock
    _stock = None
