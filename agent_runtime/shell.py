"""Interactive sessions on the agent: a real PTY (stdlib ``pty``/``termios``), relayed as messages.

``shell_open`` starts the login shell of the ``run_as`` user (or ``sh -c
COMMAND`` with that user's shell) on a new pseudo-terminal of the size the
operator's terminal has, with ``TERM`` set, in a new session whose
controlling terminal is that PTY: Ctrl-C arrives as a byte and the PTY's line
discipline turns it into SIGINT for the foreground job, as with sshd. Window
changes (``shell_resize``) set the PTY's size, which sends SIGWINCH. With
``pty = false`` (the operator has no terminal: ``ssh HOST ssh NAME -- cmd |
...``) the command runs on pipes instead, stdout and stderr merged, and the
operator's EOF closes its stdin.

Output is read as it comes (at most ``SHELL_CHUNK`` bytes a message) and
stops being read while ``SHELL_WINDOW`` bytes are not yet acknowledged
(``shell_ack``), so a ``cat`` of a huge file cannot fill the agent's or the
control plane's memory: the PTY blocks the writer, as a slow terminal does.
When the shell exits, what is left in the PTY is drained, ``shell_exit``
reports its status, and closing the PTY hangs up whatever it left behind.
A ``cancel`` (the operator went away) sends SIGHUP to the session's process
group, then SIGKILL after ``kill_grace``.

Why the stdlib and not ptyprocess: the agent drives the PTY from its event
loop (``add_reader`` on the master), and needs the child set up in one spawn
(setsid, controlling terminal, user switch, no other fd inherited);
``pty.openpty`` plus ``subprocess.Popen`` do exactly that, ptyprocess would
add a dependency and its own blocking reads. Tests use pexpect on the
operator's side.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
from typing import Callable

from centrality_core import protocol as p
from centrality_core.aio import within

from .runas import RunAs, RunAsError, resolve

log = logging.getLogger("centrality.agent.shell")

#: Sessions one agent runs at once.
MAX_SESSIONS = 16
#: Keystrokes queued for a PTY that does not read them before more are dropped.
MAX_PENDING_INPUT = 1024 * 1024
#: Seconds to drain the PTY after the shell exited (a background job may hold it open).
DRAIN_AFTER_EXIT = 0.5
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(rows, 1), max(cols, 1), 0, 0))


def _take_terminal() -> None:  # runs in the child, after setsid: the PTY becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def environment(user: RunAs, term: str, machine: str) -> dict[str, str]:
    """A login environment: the user's, not the agent's (no agent secrets leak into it)."""
    env = {"HOME": user.home, "USER": user.name, "LOGNAME": user.name, "SHELL": user.shell,
           "PATH": os.environ.get("PATH", DEFAULT_PATH) if not user.switches else DEFAULT_PATH,
           "CENTRALITY_MACHINE": machine}
    for var in ("LANG", "LC_ALL", "TZ"):
        if var in os.environ:
            env[var] = os.environ[var]
    if term:
        env["TERM"] = term
    return env


class Session:
    """One shell session: its child, its PTY (or pipes), its output window."""

    def __init__(self, msg: p.ShellOpen, send: Callable[[p.Message], None], user: RunAs, *,
                 machine: str, kill_grace: float) -> None:
        self.id = msg.id
        self.msg = msg
        self.send = send
        self.user = user
        self.machine = machine
        self.kill_grace = kill_grace
        self.proc: subprocess.Popen | None = None
        self.out_fd = -1   # PTY master, or the read end of stdout
        self.in_fd = -1    # PTY master again, or the write end of stdin
        self.unacked = 0
        self.reading = False
        self.pending = bytearray()
        self.eof = False
        self.exited: asyncio.Future | None = None
        self.drained: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self._pidfd = -1
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        m, user = self.msg, self.user
        shell = user.shell
        if m.command:
            argv, executable = [shell, "-c", m.command], shell
        else:
            argv, executable = ["-" + os.path.basename(shell)], shell  # a login shell: argv[0] "-bash"
        ids = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)} if user.switches else {}
        env = environment(user, m.term if m.pty else "", self.machine)
        cwd = user.home if os.path.isdir(user.home) else "/"
        if m.pty:
            master, slave = os.openpty()
            try:
                _set_size(slave, m.cols, m.rows)
                self.proc = subprocess.Popen(argv, executable=executable, stdin=slave, stdout=slave,
                                             stderr=slave, start_new_session=True, preexec_fn=_take_terminal,
                                             cwd=cwd, env=env, close_fds=True, **ids)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self.out_fd = self.in_fd = master
        else:
            self.proc = subprocess.Popen(argv, executable=executable, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=cwd, env=env, close_fds=True, **ids)
            self.out_fd, self.in_fd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        for fd in {self.out_fd, self.in_fd}:
            os.set_blocking(fd, False)
        self.exited = self._loop.create_future()
        self.drained = self._loop.create_future()
        self._watch_exit()
        self._resume()
        self.task = asyncio.ensure_future(self._wait())

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # no pidfds: poll
            self.task_poll = asyncio.ensure_future(self._poll_exit())
            return
        self._loop.add_reader(self._pidfd, self._reap)

    async def _poll_exit(self) -> None:
        while self.proc.poll() is None:
            await asyncio.sleep(0.05)
        if not self.exited.done():
            self.exited.set_result(self.proc.returncode)

    def _reap(self) -> None:
        if self.proc.poll() is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if not self.exited.done():
            self.exited.set_result(self.proc.returncode)

    # ------------------------------------------------------------------ output

    def _resume(self) -> None:
        if not self.reading and self.out_fd >= 0 and not self.drained.done():
            self.reading = True
            self._loop.add_reader(self.out_fd, self._readable)

    def _pause(self) -> None:
        if self.reading:
            self.reading = False
            self._loop.remove_reader(self.out_fd)

    def _readable(self) -> None:
        try:
            data = os.read(self.out_fd, p.SHELL_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process that had the PTY open closed it
            data = b""
        if not data:
            self._pause()
            if not self.drained.done():
                self.drained.set_result(None)
            return
        self.unacked += len(data)
        self.send(p.ShellOutput(id=self.id, data=data))
        if self.unacked >= p.SHELL_WINDOW:
            self._pause()

    def ack(self, consumed: int) -> None:
        self.unacked = max(0, self.unacked - consumed)
        if self.unacked < p.SHELL_WINDOW:
            self._resume()

    # ------------------------------------------------------------------ input

    def input(self, data: bytes, eof: bool) -> None:
        if self.in_fd < 0 or self.eof:
            return
        if len(self.pending) + len(data) > MAX_PENDING_INPUT:
            log.warning("session %s: the terminal does not read its input; dropping %d bytes",
                        self.id, len(data))
        else:
            self.pending += data
        if eof:
            self.eof = True
            if self.msg.pty:
                # VEOF: at the start of a line the program reads end of file (twice: after a partial line)
                self.pending += bytes([termios.tcgetattr(self.in_fd)[6][termios.VEOF][0]]) * 2
        self._write()

    def _write(self) -> None:
        while self.pending:
            try:
                n = os.write(self.in_fd, self.pending)
            except BlockingIOError:
                self._loop.add_writer(self.in_fd, self._writable)
                return
            except OSError:
                self.pending.clear()
                return
            del self.pending[:n]
        if self.eof and not self.msg.pty and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.in_fd = -1

    def _writable(self) -> None:
        self._loop.remove_writer(self.in_fd)
        self._write()

    def resize(self, cols: int, rows: int) -> None:
        if self.msg.pty and self.out_fd >= 0:
            try:
                _set_size(self.out_fd, cols, rows)
            except OSError:
                pass

    # ------------------------------------------------------------------ end

    async def _wait(self) -> None:
        rc = await self.exited
        try:
            await within(asyncio.shield(self.drained), DRAIN_AFTER_EXIT)
        except asyncio.TimeoutError:
            # still readable or waiting for an ack: send what is there, then stop
            if self.reading:
                self._readable()
        self._close_fds()
        self._hangup(signal.SIGHUP)  # what the shell left in its group (closing the PTY did the rest)
        if rc < 0:
            self.send(p.ShellExit(id=self.id, signal=min(-rc, 128)))
        else:
            self.send(p.ShellExit(id=self.id, exit_code=rc))
        log.info("session %s ended: %s", self.id, rc)

    def _close_fds(self) -> None:
        self._pause()
        for fd in {self.out_fd, self.in_fd}:
            if fd >= 0:
                try:
                    self._loop.remove_writer(fd)
                except (ValueError, OSError):
                    pass
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        if self.msg.pty and self.out_fd >= 0:
            os.close(self.out_fd)
        self.out_fd = self.in_fd = -1

    def _hangup(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def cancel(self) -> None:
        """The operator went away: hang up, then kill the session's process group."""
        if self.exited.done():
            return
        self._hangup(signal.SIGHUP)
        self._close_fds()
        try:
            await within(asyncio.shield(self.exited), self.kill_grace)
        except asyncio.TimeoutError:
            self._hangup(signal.SIGKILL)
            await self.exited


class Shells:
    """The shell sessions of one control-plane connection."""

    def __init__(self, send: Callable[[p.Message], None], *, run_as: str = "", machine: str = "",
                 kill_grace: float = 2.0) -> None:
        self.send = send
        self.run_as = run_as
        self.machine = machine
        self.kill_grace = kill_grace
        self.sessions: dict[str, Session] = {}

    def open(self, msg: p.ShellOpen) -> None:
        if msg.id in self.sessions:
            return self.send(p.ShellExit(id=msg.id, error="a session with this id is already open"))
        if len(self.sessions) >= MAX_SESSIONS:
            return self.send(p.ShellExit(id=msg.id, error=f"agent busy: {len(self.sessions)} sessions open"))
        try:
            user = resolve(self.run_as)
            session = Session(msg, self.send, user, machine=self.machine, kill_grace=self.kill_grace)
            session.start()
        except RunAsError as exc:
            return self.send(p.ShellExit(id=msg.id, error=str(exc)[:250]))
        except OSError as exc:
            return self.send(p.ShellExit(id=msg.id, error=f"cannot start the shell: {exc}"[:250]))
        log.info("session %s opened as %s: %s", msg.id, user.name, msg.command[:200] or "login shell")
        self.sessions[msg.id] = session
        session.task.add_done_callback(lambda _t, i=msg.id: self.sessions.pop(i, None))

    def handle(self, msg: p.Message) -> bool:
        """Route a session message; False if ``msg`` is not one (or not for a session)."""
        if isinstance(msg, p.ShellOpen):
            self.open(msg)
            return True
        session = self.sessions.get(getattr(msg, "id", ""))
        if session is None:
            return isinstance(msg, (p.ShellInput, p.ShellResize, p.ShellAck))
        if isinstance(msg, p.ShellInput):
            session.input(msg.data, msg.eof)
        elif isinstance(msg, p.ShellResize):
            session.resize(msg.cols, msg.rows)
        elif isinstance(msg, p.ShellAck):
            session.ack(msg.consumed)
        elif isinstance(msg, p.Cancel):
            asyncio.ensure_future(session.cancel())
        else:
            return False
        return True

    async def close(self) -> None:
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.cancel() for s in sessions), return_exceptions=True)
        await asyncio.gather(*(s.task for s in sessions if s.task), return_exceptions=True)
