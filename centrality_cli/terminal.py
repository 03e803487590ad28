"""The operator's side of ``centrality ssh``: one SSH session channel, the local terminal raw.

The CLI logs in to the control plane as the machine's name (what a plain
OpenSSH user does with ``ssh -p 8022 NAME@HOST``) and opens a shell (or exec)
session with a PTY request of the local terminal's size and ``TERM`` (when
stdin is a terminal); the local terminal is put in raw mode (stdlib ``tty``/``termios``)
so every key, Ctrl-C included, goes to the machine, and is restored however
the session ends (exit, disconnect, error, signal). SIGWINCH sends a window
change. Without a terminal, stdin and stdout are piped through and EOF is
passed on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import termios
import tty
from contextlib import contextmanager

import asyncssh

from centrality_core.errors import ConnectError

from centrality_core.client import request_error


@contextmanager
def raw_terminal(fd: int):
    """Raw mode on ``fd`` for the block; the saved mode comes back on any exit."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


class _Session(asyncssh.SSHClientSession):
    def __init__(self) -> None:
        self.stderr = b""
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr = (self.stderr + data)[-65536:]
        else:
            _write_all(1, data)

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            import select

            select.select([], [fd], [])


async def run_shell(conn, command: str | None, *, tty_mode: bool | None = None, force: bool = False) -> int:
    """A session on the machine ``conn`` logged in as: its shell (``command`` None) or
    ``command`` there, with this process's terminal; return its exit status."""
    stdin = sys.stdin.fileno()
    use_pty = os.isatty(stdin) if tty_mode is None else tty_mode
    kwargs = {}
    if use_pty:
        cols, rows = _size(stdin)
        kwargs = {"term_type": os.environ.get("TERM") or "xterm", "term_size": (cols, rows),
                  "request_pty": "force"}
    kwargs["env"] = {"CENTRALITY_SESSION": "1", **({"CENTRALITY_FORCE": "1"} if force else {})}
    chan, session = await conn.create_session(_Session, command, encoding=None, **kwargs)
    loop = asyncio.get_running_loop()
    interactive = os.isatty(stdin)

    def on_stdin() -> None:
        try:
            data = os.read(stdin, 65536)
        except OSError:
            data = b""
        if data:
            chan.write(data)
        else:
            loop.remove_reader(stdin)
            chan.write_eof()

    def on_winch() -> None:
        chan.change_terminal_size(*_size(stdin))

    async def read_file() -> None:  # a regular file or /dev/null: the loop cannot poll it
        while True:
            data = await loop.run_in_executor(None, os.read, stdin, 65536)
            if not data:
                return chan.write_eof()
            chan.write(data)

    ctx = raw_terminal(stdin) if use_pty and interactive else _nothing()
    reader = None
    with ctx:
        try:
            loop.add_reader(stdin, on_stdin)
        except PermissionError:
            reader = asyncio.ensure_future(read_file())
        if use_pty:
            loop.add_signal_handler(signal.SIGWINCH, on_winch)
        for sig in (signal.SIGTERM, signal.SIGHUP):  # end the session, so the terminal is restored
            loop.add_signal_handler(sig, chan.close)
        try:
            await chan.wait_closed()
        finally:
            if reader is not None:
                reader.cancel()
            else:
                loop.remove_reader(stdin)
            for sig in (signal.SIGTERM, signal.SIGHUP) + ((signal.SIGWINCH,) if use_pty else ()):
                loop.remove_signal_handler(sig)
    status = chan.get_exit_status()
    if status is None or status < 0:
        raise ConnectError("the session ended without an exit status (closed, or the control plane went away)")
    if status and session.stderr.strip():
        err = request_error(session.stderr.decode("utf-8", "replace"), status)
        raise err
    return status


def _size(fd: int) -> tuple[int, int]:
    """The terminal's own size (not $COLUMNS/$LINES, which do not follow a resize)."""
    try:
        size = os.get_terminal_size(fd)
        return size.columns or 80, size.lines or 24
    except OSError:
        size = shutil.get_terminal_size((80, 24))
        return size.columns, size.lines


@contextmanager
def _nothing():
    yield
