"""One SSH connection shared by successive CLI commands, as OpenSSH's ControlPersist.

Off unless asked for (``CENTRALITY_PERSIST=10m``, or ``persist = "10m"`` in a context
of contexts.toml). Then the first command connects as always and leaves a *master*
behind (``python -m centrality_cli.sharemaster``, a process of its own, detached):
it holds an authenticated connection to the control plane and listens on a Unix
socket. The commands after it send their request line to that socket instead of
connecting: no asyncssh import, no key exchange, no login on either side. Each
request still gets a channel of its own on the connection, so the control plane
sees exactly what a direct command would send, and answers the same bytes.

Who may use a master is who could use the key: the socket lives in a directory
of the user's own (``$XDG_RUNTIME_DIR/centrality``, else ``$TMPDIR/centrality-UID``)
that must be a real directory owned by this user with mode 0700, is created 0600,
and the master also checks each client's uid (``SO_PEERCRED``). Anything else and
the command connects directly. The master exits when the control plane's
connection ends, and after ``persist`` seconds without a request.

Frames on the socket, both ways: one kind byte, a 4-byte big-endian length, the
payload. The client sends ``C`` with ``{"argv": [...]}`` (JSON); the master
answers with ``o`` (stdout bytes) and ``e`` (stderr bytes) as they come, then ``x``
(the exit status, ASCII), or ``n`` (not run: it has no connection any more;
the client then connects itself, which is safe since nothing ran). ``Q`` (empty)
asks the master to close its connection and exit (``centrality disconnect``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import AsyncIterator

from . import durations, paths
from .errors import ConfigError

#: Longest frame either side accepts (a request line, one chunk of an answer).
MAX_FRAME = 1 << 20
#: The request kinds and answer kinds of the frame protocol (module docstring).
REQUEST, QUIT, STDOUT, STDERR, EXIT, NOT_RUN = b"C", b"Q", b"o", b"e", b"x", b"n"
_HEADER = struct.Struct(">cI")
#: ``sockaddr_un`` holds 108 bytes; a longer path cannot be bound.
MAX_SOCKET_PATH = 104


class NotShared(Exception):
    """The master cannot run the request (no connection any more): nothing ran."""


def persist_seconds(context_persist: str = "") -> float:
    """How long a master stays after its last request; 0 means no sharing.

    ``$CENTRALITY_PERSIST`` wins over the context's ``persist``; ``0``, ``no`` and
    ``off`` turn it off."""
    text = os.environ.get("CENTRALITY_PERSIST", context_persist or "").strip()
    if text.lower() in ("", "0", "no", "off", "false"):
        return 0.0
    try:
        seconds = durations.parse(text)
    except Exception:  # noqa: BLE001 - a bad value is the user's to fix, said plainly
        raise ConfigError(f"persist {text!r} is not a duration (e.g. 10m; 0 turns sharing off)") from None
    if seconds < 0:
        raise ConfigError(f"persist {text!r} must not be negative")
    return seconds


def runtime_dir() -> Path:
    """The user's private directory for sockets (created 0700). Raises ConfigError when it
    exists but is not a directory of this user's alone."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    path = Path(base) / "centrality" if base and os.path.isabs(base) else \
        Path(tempfile.gettempdir()) / f"centrality-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise ConfigError(f"cannot use {path} for shared connections: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ConfigError(f"{path} is not a private directory of this user (mode 0700): "
                          "connections are not shared")
    return path


def socket_path(address: str, fingerprint: str, key: str, user: str) -> Path:
    """Where the master for this control plane, key and login listens. Another config dir
    (another installation, ``HOME``) is another master."""
    ident = "\0".join([address, fingerprint, str(Path(key).expanduser()), user, str(paths.config_dir())])
    path = runtime_dir() / ("s-" + hashlib.sha256(ident.encode()).hexdigest()[:20])
    if len(str(path)) > MAX_SOCKET_PATH:
        raise ConfigError(f"socket path {path} is too long for a Unix socket")
    return path


def lock_path(sock: Path) -> Path:
    return sock.with_name(sock.name + ".lock")


def log_path(sock: Path) -> Path:
    return sock.with_name(sock.name + ".log")


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One frame; ``asyncio.IncompleteReadError`` at the end of the stream."""
    kind, size = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes (at most {MAX_FRAME})")
    return kind, await reader.readexactly(size)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux); None where it cannot be asked."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


class Link:
    """A command's line to a master. ``run`` sends one request and yields its answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    async def open(cls, path: Path) -> Link | None:
        """The master's link, or None when there is none to use (no socket, a stale one,
        a socket that is not this user's)."""
        try:
            st = path.lstat()
        except OSError:
            return None
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            return None
        link = cls(path)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            return None
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.geteuid():
            writer.close()
            return None
        link._reader, link._writer = reader, writer
        return link

    async def run(self, argv: list[str]) -> AsyncIterator[tuple[bytes, bytes]]:
        """Send ``argv``; yield (kind, payload) frames up to and including the exit status.
        Raises NotShared when the master ran nothing, ConnectionError when it went away."""
        assert self._writer is not None
        self._writer.write(frame(REQUEST, json.dumps({"argv": argv}).encode()))
        try:
            await self._writer.drain()
            while True:
                kind, payload = await read_frame(self._reader)
                if kind == NOT_RUN:
                    raise NotShared(payload.decode("utf-8", "replace"))
                yield kind, payload
                if kind == EXIT:
                    return
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ConnectionError(f"the shared connection's master went away ({exc})") from None

    async def quit(self) -> None:
        """Ask the master to close its connection and exit; returns once it has gone."""
        assert self._writer is not None
        self._writer.write(frame(QUIT, b""))
        try:
            await self._writer.drain()
            await self._reader.read()  # it closes the link as it goes
        except ConnectionError:
            pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def master_starting(sock: Path) -> bool:
    """Whether a master holds the lock of this socket (running, or starting)."""
    import fcntl

    try:
        fd = os.open(lock_path(sock), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def start_master(context: str, sock: Path, persist: float) -> None:
    """Leave a master behind for the next commands (detached: its own session, no
    terminal, stdio on /dev/null and its log file, so nothing waits for it)."""
    if master_starting(sock):
        return
    log = os.open(log_path(sock), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        subprocess.Popen([sys.executable, "-m", "centrality_cli.sharemaster", "--context", context,
                          "--socket", str(sock), "--persist", repr(persist)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         close_fds=True)
    finally:
        os.close(log)
