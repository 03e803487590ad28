"""The agent's command executor: one process group per command, bounded output.

``run()`` starts ``argv`` (no shell; ``sh -c`` is the caller's choice) in a
new session, so the command and everything it starts share one process group
that the agent owns. Output is read in chunks, decoded as UTF-8 (bad bytes
replaced) and handed to a callback as it arrives, until ``max_output_bytes``
have been passed on; the rest is read and dropped (so the command never
blocks on a full pipe) and the result says ``truncated``.

Ending a command always ends its whole process group: on timeout, on cancel
and when the agent shuts down, SIGTERM goes to the group, then SIGKILL after
``kill_grace`` seconds. When the command's own process exits, anything it left
running in its group is ended the same way (use ``systemd-run`` or ``setsid``
to leave a daemon behind on purpose). The direct child is always waited for,
so no zombie is left.

Commands run in the agent's working directory and environment, plus
``CENTRALITY_MACHINE`` (this machine's name) and ``CENTRALITY_EXEC_ID``
(and, on a simulated machine, what ``simshell`` adds: its hostname,
``uname`` and ``nvidia-smi`` first on ``PATH``).

``Executor`` runs the commands of one control-plane connection: it answers
``command`` and ``cancel`` messages and sends ``output`` and ``exit``; closing
it (the connection ended, or the agent stops) kills what is still running.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from centrality_core import protocol as p
from centrality_core.aio import within

log = logging.getLogger("centrality.agent.exec")

#: Bytes read from a pipe at a time: one ``output`` message carries at most this much.
CHUNK = 32 * 1024
#: Hard cap on output passed on per command, whatever the control plane asks.
MAX_OUTPUT_CAP = 64 * 1024 * 1024
#: How long to wait for pipes to close once the process group is gone.
PIPE_DRAIN = 1.0

OnOutput = Callable[[str, str], None]  # (stream, text)


@dataclass
class Result:
    exit_code: int | None = None
    signal: int | None = None
    duration: float = 0.0
    truncated: bool = False
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is still in process group ``pgid``.

    Zombies are left out: when a container's PID 1 does not reap orphans, a
    killed group would otherwise look alive forever. Uses /proc where it
    exists, else ``killpg(pgid, 0)``.
    """
    try:
        os.killpg(pgid, 0)  # the common case, cheaply: nobody is left in the group
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _end_group(proc: _Child | _AsyncioChild, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` s; reap the leader."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            if not _group_alive(pgid):
                break
            await asyncio.sleep(0.05)  # the leader is gone; others in its group are not yet
            continue
        await asyncio.sleep(0.02)
    else:
        _signal_group(pgid, signal.SIGKILL)
    if proc.returncode is None:
        _signal_group(pgid, signal.SIGKILL)
        await proc.exited()
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


async def _pump(reader: asyncio.StreamReader, stream: str, budget: list[int], state: dict,
                on_output: OnOutput) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        data = await reader.read(CHUNK)
        if not data:
            text = decoder.decode(b"", final=True)
            if text:
                on_output(stream, text)
            return
        if budget[0] <= 0:
            state["truncated"] = True
            continue
        if len(data) > budget[0]:
            data = data[: budget[0]]
            state["truncated"] = True
        budget[0] -= len(data)
        text = decoder.decode(data, final=budget[0] <= 0)
        if text:
            on_output(stream, text)


async def run(argv: list[str], *, timeout: float, max_output_bytes: int, on_output: OnOutput,
              cancel: asyncio.Event | None = None, kill_grace: float = 2.0,
              env: dict[str, str] | None = None, spawn: dict | None = None) -> Result:
    """Run ``argv`` to its end (or its timeout or cancel); never raises for the command's sake.

    ``env`` adds to the agent's environment. The working directory is the agent's.
    ``spawn`` adds ``subprocess.Popen`` arguments (``user``, ``group``, ``extra_groups``,
    ``cwd``: the ``run_as`` user).
    """
    start = time.monotonic()
    try:
        proc = await _spawn(argv, {**os.environ, **env} if env else None, spawn or {})
    except FileNotFoundError:
        return Result(exit_code=127, error=f"command not found: {argv[0][:200]}")
    except PermissionError:
        return Result(exit_code=126, error=f"permission denied: {argv[0][:200]}")
    except (OSError, ValueError) as exc:
        return Result(exit_code=126, error=f"cannot run {argv[0][:100]}: {exc}"[:250])
    budget = [max(0, min(max_output_bytes, MAX_OUTPUT_CAP))]
    state = {"truncated": False}
    pumps = [asyncio.ensure_future(_pump(proc.stdout, "stdout", budget, state, on_output)),
             asyncio.ensure_future(_pump(proc.stderr, "stderr", budget, state, on_output))]
    result = Result()
    exited = asyncio.ensure_future(proc.exited())
    canceller = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    try:
        waiting = {exited} | ({canceller} if canceller else set())
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if exited not in done:
            if canceller is not None and canceller in done:
                result.cancelled, result.error = True, "cancelled"
            else:
                result.timed_out, result.error = True, f"timed out after {timeout:g}s"
    except asyncio.CancelledError:  # the agent is stopping or the connection ended
        await _finish(proc, pumps, kill_grace)
        raise
    finally:
        exited.cancel()
        if canceller is not None:
            canceller.cancel()
    await _finish(proc, pumps, kill_grace)
    result.duration = time.monotonic() - start
    result.truncated = state["truncated"]
    rc = proc.returncode
    if rc is not None and rc < 0:
        result.signal = -rc
    elif rc is not None and not (result.timed_out or result.cancelled):
        result.exit_code = rc
    return result


async def _finish(proc: _Child | _AsyncioChild, pumps: list[asyncio.Future], grace: float) -> None:
    """End the process group (whatever is left of it), then collect the pipes."""
    if proc.returncode is None or _group_alive(proc.pid):
        await _end_group(proc, grace)
    try:
        await within(asyncio.gather(*pumps), PIPE_DRAIN)
        await within(proc.wait(), PIPE_DRAIN)  # reaped, pipes closed
    except asyncio.TimeoutError:
        # a process that left our group (setsid) still holds the pipes: stop reading
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        proc.close_pipes()


# ------------------------------------------------------------------ child processes


async def _spawn(argv: list[str], env: dict | None, spawn: dict) -> _Child | _AsyncioChild:
    if hasattr(os, "pidfd_open"):
        try:
            return await _Child.start(argv, env, spawn)
        except _NoPidfd:
            pass
    return _AsyncioChild(await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, env=env, **spawn))


class _NoPidfd(Exception):
    pass


class _Child:
    """A child started with ``subprocess.Popen`` and watched through a pidfd.

    Why not ``asyncio.create_subprocess_exec``: under uvloop (the agent's
    loop when it can) that forks, and a fork costs time in proportion to the
    agent's memory (35 ms per command in a 300 MB process, measured), where
    ``subprocess`` uses vfork (about 1 ms whatever the size). The pidfd becomes
    readable when the child exits; we then reap it ourselves (no other child
    watcher knows this pid), so the exit is seen at once, without polling.
    """

    def __init__(self) -> None:
        self.pid = 0
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._exit: asyncio.Future | None = None
        self._popen: subprocess.Popen | None = None
        self._fd = -1

    @classmethod
    async def start(cls, argv: list[str], env: dict | None, spawn: dict | None = None) -> _Child:
        loop = asyncio.get_running_loop()
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True, env=env, **(spawn or {}))
        self = cls()
        self.pid, self._popen, self._exit = popen.pid, popen, loop.create_future()
        try:
            self._fd = os.pidfd_open(popen.pid)
        except OSError:  # a kernel without pidfds (before 5.3)
            popen.kill()
            popen.communicate()
            raise _NoPidfd() from None
        loop.add_reader(self._fd, self._on_exit)
        for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            reader = asyncio.StreamReader(limit=CHUNK * 2)
            transport, _ = await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r), pipe)
            self._transports.append(transport)
            setattr(self, name, reader)
        return self

    def _on_exit(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the status is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        self._popen.returncode = self.returncode  # so Popen does not warn that it still runs
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if not self._exit.done():
            self._exit.set_result(self.returncode)

    async def exited(self) -> None:
        """Until the process itself has exited (what it left behind may still hold its pipes)."""
        await asyncio.shield(self._exit)

    async def wait(self) -> int:
        await asyncio.shield(self._exit)
        return self.returncode

    def close_pipes(self) -> None:
        for t in self._transports:
            t.close()


class _AsyncioChild:
    """``asyncio.subprocess.Process`` with the same small interface (no pidfd: poll for the exit)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid, self.stdout, self.stderr = proc.pid, proc.stdout, proc.stderr

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def exited(self) -> None:
        # proc.wait() would also wait for the pipes, which a left-behind process may hold open
        delay = 0.002
        while self._proc.returncode is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def wait(self) -> int:
        return await self._proc.wait()

    def close_pipes(self) -> None:
        for pipe in (self._proc.stdout, self._proc.stderr):
            transport = getattr(pipe, "_transport", None)
            if transport is not None:
                transport.close()


class Executor:
    """The commands of one control-plane connection."""

    def __init__(self, send: Callable[[p.Message], None], *, max_running: int = 16,
                 kill_grace: float = 2.0, machine: str = "", run_as: str = "",
                 environment: Callable[[], dict[str, str]] | None = None) -> None:
        self.send = send
        self.machine = machine  # CENTRALITY_MACHINE in the command's environment
        self.run_as = run_as  # agent.toml's run_as: commands run as that user
        self.environment = environment  # more of it, asked for each command (a simulated machine's shell)
        self.max_running = max_running
        self.kill_grace = kill_grace
        self.running: dict[str, tuple[asyncio.Task, asyncio.Event]] = {}
        self.closed = False

    def start(self, cmd: p.Command) -> None:
        if self.closed:
            return
        if cmd.id in self.running:
            self.send(p.CommandExit(id=cmd.id, error="a command with this id is already running"))
            return
        if len(self.running) >= self.max_running:
            self.send(p.CommandExit(id=cmd.id, error=f"agent busy: {len(self.running)} commands running"))
            return
        cancel = asyncio.Event()
        task = asyncio.ensure_future(self._run(cmd, cancel))
        self.running[cmd.id] = (task, cancel)
        task.add_done_callback(lambda _t, i=cmd.id: self.running.pop(i, None))

    def cancel(self, command_id: str) -> None:
        entry = self.running.get(command_id)
        if entry is not None:
            entry[1].set()

    async def _run(self, cmd: p.Command, cancel: asyncio.Event) -> None:
        log.info("running %s: %s", cmd.id, " ".join(cmd.argv)[:200])

        def output(stream: str, text: str) -> None:
            self.send(p.CommandOutput(id=cmd.id, stream=stream, data=text))

        env, spawn = {"CENTRALITY_MACHINE": self.machine, "CENTRALITY_EXEC_ID": cmd.id}, {}
        if self.environment is not None:
            try:
                env.update(self.environment())
            except OSError as exc:
                log.warning("%s: cannot prepare the simulated shell: %s", cmd.id, exc)
        if self.run_as:
            from .runas import RunAsError, resolve

            try:
                user = resolve(self.run_as)
            except RunAsError as exc:
                self.send(p.CommandExit(id=cmd.id, exit_code=126, error=str(exc)[:250]))
                return
            if user.switches:  # as that user, from its home, with its HOME/USER/LOGNAME
                spawn = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups),
                         "cwd": user.home if os.path.isdir(user.home) else "/"}
                env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
        r = await run(list(cmd.argv), timeout=cmd.timeout, max_output_bytes=cmd.max_output_bytes,
                      on_output=output, cancel=cancel, kill_grace=self.kill_grace, env=env, spawn=spawn)
        log.info("%s ended: exit %s signal %s%s", cmd.id, r.exit_code, r.signal,
                 f" ({r.error})" if r.error else "")
        self.send(p.CommandExit(id=cmd.id, exit_code=r.exit_code, signal=r.signal,
                                duration=min(r.duration, 365 * 86400), truncated=r.truncated,
                                timed_out=r.timed_out, error=r.error))

    async def close(self) -> None:
        """Kill every running command (their process groups) and wait until they are gone."""
        self.closed = True
        tasks = [t for t, _ in self.running.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
