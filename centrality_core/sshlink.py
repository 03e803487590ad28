"""Opening SSH connections to a control plane: pinned host key, one client key,
and asyncssh errors translated into Centrality errors with a reason to act on.

A control plane may have several addresses and pinned host keys (replicas, see
``endpoints.py``): ``connect`` accepts any of the pinned keys, ``connect_any``
tries the addresses in turn.

asyncssh is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aio import within
from .errors import AuthRefused, Busy, ConfigError, ConnectError, HostKeyMismatch, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    import asyncssh

#: Ciphers in order of preference: AES-GCM is about twice as cheap as
#: chacha20-poly1305 in asyncssh on CPUs with AES-NI.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
           "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr")
#: Key exchange as a current OpenSSH server offers it, less what audits fail
#: (NIST curves, SHA-1, 1024-bit or negotiated groups): post-quantum hybrids
#: first where this asyncssh has them, then curve25519, then large fixed groups.
KEX = ("mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
       "curve25519-sha256", "curve25519-sha256@libssh.org",
       "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512")
#: Encrypt-then-MAC only (AES-GCM and chacha20-poly1305 need none).
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com")
#: No compression: it does not help small messages, costs CPU, and is an attack surface.
COMPRESSION = ("none",)


#: How a busy control plane says when to come back, at the end of its disconnect reason
#: (``control_plane/ssh.py``); a reason without it (older versions) leaves the caller's backoff.
_RETRY_IN = re.compile(r"; retry in (\d+(?:\.\d+)?)s\b")
#: A control plane's "retry in" is believed up to this many seconds.
MAX_RETRY_AFTER = 300.0


def retry_after(reason: str) -> float | None:
    """The delay a busy control plane's disconnect reason asks for, or None."""
    m = _RETRY_IN.search(reason)
    return min(float(m.group(1)), MAX_RETRY_AFTER) if m else None


def algorithms() -> dict[str, Any]:
    """asyncssh connection options that restrict both sides to the algorithms above."""
    from asyncssh.kex import get_kex_algs
    from asyncssh.mac import get_mac_algs

    have_kex, have_mac = set(get_kex_algs()), set(get_mac_algs())
    return {
        "kex_algs": [a for a in KEX if a.encode() in have_kex],
        "encryption_algs": list(CIPHERS),
        "mac_algs": [a for a in MACS if a.encode() in have_mac],
        "compression_algs": list(COMPRESSION),
    }


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def load_private_key(path: str | Path) -> asyncssh.SSHKey:
    import asyncssh

    try:
        return asyncssh.read_private_key(str(path))
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist") from None
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot read key {path}: {exc}") from None


def generate_key(path: Path) -> asyncssh.SSHKey:
    """Create an ed25519 key at ``path`` (private, 0600) and ``path.pub``."""
    import asyncssh

    from .paths import write_private

    key = asyncssh.generate_private_key("ssh-ed25519")
    write_private(path, key.export_private_key())
    Path(str(path) + ".pub").write_bytes(key.export_public_key())
    return key


@functools.lru_cache(maxsize=None)
def _client_class():
    """The client class, made once (asyncssh is imported on first use; a class per
    connection cost a simulator ~2 KB per machine)."""
    import asyncssh

    class PinnedClient(asyncssh.SSHClient):
        """Accepts only the pinned host keys, by fingerprint; remembers what it saw."""

        def __init__(self, expected: frozenset[str]) -> None:
            self.expected = expected
            self.seen: str | None = None
            self.banner = ""

        def validate_host_public_key(self, host, addr, port, key) -> bool:
            self.seen = fingerprint(key)
            return self.seen in self.expected

        def auth_banner_received(self, msg: str, lang: str) -> None:
            from .sanitize import one_line

            self.banner += one_line(msg, 512)

    return PinnedClient


async def _tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket within ``timeout`` (each of the host's addresses in turn)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await within(loop.sock_connect(sock, addr), timeout)
            return sock
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            if isinstance(exc, asyncio.TimeoutError):
                raise
            last = exc
    raise last or OSError(f"no address for {host}")


async def connect(address: str, expected_fingerprint: str, key: asyncssh.SSHKey, *,
                  username: str = "operator", timeout: float = 10.0, tcp_timeout: float | None = None,
                  **kwargs: Any) -> asyncssh.SSHClientConnection:
    """Connect and authenticate, or raise ConnectError / HostKeyMismatch / AuthRefused.

    ``expected_fingerprint``: the pinned host key, or several, comma-separated.
    ``tcp_timeout``: a shorter bound on the TCP connect alone (a host that is down
    and sends no reset), so that the next address is tried soon; ``timeout``
    still bounds the whole handshake.
    """
    import asyncssh

    from . import sshpackets
    from .contexts import split_address
    from .endpoints import split

    sshpackets.install()
    host, port = split_address(address)
    pinned = split(expected_fingerprint)
    client = _client_class()(frozenset(pinned))
    try:
        if tcp_timeout is not None:
            try:
                kwargs["sock"] = await _tcp(host, port, min(tcp_timeout, timeout))
            except asyncio.TimeoutError:
                raise ConnectError(f"cannot reach {address}: no answer within "
                                   f"{min(tcp_timeout, timeout):g}s") from None
        conn, _ = await asyncssh.create_connection(
            lambda: client, host, port,
            username=username,
            client_keys=[key],
            known_hosts=((), (), ()),
            agent_path=None,
            config=None,
            connect_timeout=timeout,
            login_timeout=timeout,
            keepalive_interval=30,
            **{**algorithms(), **kwargs},
        )
        return conn
    except asyncssh.HostKeyNotVerifiable:
        raise HostKeyMismatch(
            f"host key mismatch for {address}: expected {' or '.join(pinned)}, "
            f"the server presented {client.seen}. Refusing to connect: if the control plane "
            "was reinstalled on purpose, log in again (`centrality login`) or re-join the agent."
        ) from None
    except asyncssh.PermissionDenied:
        why = client.banner or "its key is unknown or revoked"
        raise AuthRefused(f"{address} refused our key ({fingerprint(key)}): {why}") from None
    except (asyncssh.ConnectionLost, ConnectionResetError):
        # Closed before the handshake: the control plane turns away sources that
        # connect too fast before it even greets them (a refused port is OSError below).
        raise Busy(f"{address} closed the connection before its greeting: busy, or too many "
                   "connections from this address at once; retry shortly") from None
    except asyncssh.DisconnectError as exc:
        if exc.code == asyncssh.DISC_TOO_MANY_CONNECTIONS:
            raise Busy(f"{address} is busy: {exc.reason}", retry_after=retry_after(exc.reason)) from None
        raise ConnectError(f"{address} closed the connection: {exc.reason}") from None
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ConnectError(f"cannot reach {address}: timed out after {timeout:g}s") from exc
    except ConnectionRefusedError:
        raise ConnectError(f"cannot reach {address}: connection refused") from None
    except (OSError, socket.gaierror) as exc:
        raise ConnectError(f"cannot reach {address}: {exc.strerror or exc}") from None
    except asyncssh.Error as exc:
        raise ProtocolError(f"SSH error with {address}: {exc}") from None


#: With several addresses, how long a TCP connect to one may take before the next is
#: tried (the handshake after it keeps the caller's longer timeout).
TCP_TIMEOUT = 5.0

#: Failures that say something about this address or its replica (a host key
#: not pinned, a key cache that does not know us yet), not about the network.
REFUSALS = (HostKeyMismatch, AuthRefused)


async def connect_any(addresses: list[str], expected_fingerprint: str, key: asyncssh.SSHKey,
                      **kwargs: Any) -> tuple[asyncssh.SSHClientConnection, str]:
    """``connect`` to the first of ``addresses`` that answers; returns it and its address.

    One address: its own error, as ``connect`` raises it. Several: when every
    one refused (host key, client key), the first refusal; otherwise a
    ``Busy`` (when one was busy) or ``ConnectError`` naming what each said, so
    a caller that retries transient errors retries (the next round may find a
    replica that is up, or one that knows our key by then).
    """
    errors: list[tuple[str, Exception]] = []
    if len(addresses) > 1:
        kwargs.setdefault("tcp_timeout", TCP_TIMEOUT)
    for address in addresses:
        try:
            return await connect(address, expected_fingerprint, key, **kwargs), address
        except (ConnectError, ProtocolError) as exc:
            if len(addresses) == 1:
                raise
            errors.append((address, exc))
    if all(isinstance(exc, REFUSALS) for _, exc in errors):
        raise errors[0][1]
    summary = "; ".join(f"{exc.reason}" for _, exc in errors)
    busy = [exc for _, exc in errors if isinstance(exc, Busy)]
    if busy:  # come back when the first of the busy replicas said it would have room
        after = [exc.retry_after for exc in busy if exc.retry_after is not None]
        raise Busy(f"cannot reach any of {', '.join(addresses)}: {summary}",
                   retry_after=min(after) if len(after) == len(busy) else None)
    raise ConnectError(f"cannot reach any of {', '.join(addresses)}: {summary}")
