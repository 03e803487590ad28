"""``ssh NAME [-- CMD]``: an interactive session on one machine, over its agent's channel.

Unlike the other requests this one answers raw bytes, not JSON: the channel
becomes the terminal of a shell on the machine. With a PTY on the operator's
channel (``ssh -t``, or ``centrality ssh``) the shell gets a PTY of the same
size and ``TERM``; without one the command runs on pipes, so
``ssh -p 8022 cp ssh gpu01 -- uname -a | ...`` scripts cleanly. The exit
status is the shell's (128 + N when a signal ended it; 255 when the machine
went away; 130 when the operator did).

Refusals come before any byte of the session, as the usual JSON error on
stderr: viewers and agent keys (it writes), a machine that is not live, a
drained machine without ``--force``, an agent too old for shell sessions.
Every session is audited (who, machine, start, end, exit status) in the exec
audit, argv ``["ssh", NAME, ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncssh

from centrality_core import protocol as p
from centrality_core.aio import within
from centrality_core.errors import CentralityError, Conflict, NotFound, RequestFailed, UsageError

from .. import fleetwide
from ..peer_shell import PeerShell, peer_command
from ..shell import Recorder, ShellRelay
from .dispatch import Ctx, Reply, request


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="open it on a drained machine too")
    parser.add_argument("name", help="the machine")
    parser.add_argument("words", nargs=argparse.REMAINDER, help="[-- CMD [ARGS...]]")


def agent_for(ctx: Ctx, name: str, *, force: bool, what: str):
    """The live agent session of ``name`` (or, held by a peer replica, that replica's
    name: a string), or the refusal an operator can act on."""
    reg = ctx.services.registry
    machine = reg.machine(name)
    if machine is None:
        raise NotFound(f"no machine named {name!r}")
    if machine.state.value != "live":
        raise Conflict(f"{name} is {machine.state.value}: its agent is not connected", code="not_live")
    if reg.records[name].flags.drained and not force:
        raise Conflict(f"{name} is drained ({reg.records[name].flags.drain_reason or 'no reason given'}): "
                       f"add --force to {what} anyway", code="drained")
    session = reg.session(name)
    replica = fleetwide.holder(reg, name)
    if session is None and replica:
        if ctx.from_peer or replica not in ctx.services.peers:  # a peer asks for its own agents only
            raise Conflict(fleetwide.elsewhere(ctx.services.peers, replica, name, what), code="held_elsewhere")
        return replica
    version = tuple(getattr(session, "protocol", (1, 0)))
    if session is None or version < p.SHELL_FILES:
        raise Conflict(f"the agent on {name} speaks protocol {version[0]}.{version[1]}, too old to {what} "
                       f"(needs {p.SHELL_FILES[0]}.{p.SHELL_FILES[1]}): upgrade it", code="unsupported")
    return session


@request("ssh", writes=True, args=_args)
async def ssh(ctx: Ctx, ns) -> Reply:
    """Open a shell (or run CMD on a terminal) on one machine, relayed over its agent's link."""
    words = ns.words[1:] if ns.words[:1] == ["--"] else ns.words  # argparse may have taken the --
    if ctx.session is None:
        raise UsageError("ssh needs an SSH session channel")
    svc, name = ctx.services, ns.name
    agent = agent_for(ctx, name, force=ns.force, what="open a shell")
    term = ctx.session.pty  # (term, cols, rows) or None
    raw = getattr(ctx.session, "raw_command", None)
    command = raw if raw is not None else " ".join(words)  # as OpenSSH does: the remote shell parses it
    sid = uuid.uuid4().hex
    recorder = None
    if svc.settings.ssh_record_bytes > 0 and not ctx.from_peer:
        recorder = Recorder(svc.settings.server_dir() / "recordings" / f"{sid}.out", svc.settings.ssh_record_bytes)
    argv = ["ssh", name] + (["--", *words] if words else [])
    audit = {"id": sid, "started_at": time.time(), "finished_at": None, "actor": ctx.actor, "argv": argv,
             "selector": name, "machines": [name], "skipped": [], "results": {}, "status": "running",
             "exit_code": None}
    if isinstance(agent, str):  # held by the peer replica ``agent``: relayed through it
        return await _through_peer(ctx, agent, name, command, term, ns.force, audit, recorder)
    relay = ShellRelay(id=sid, name=name, session=agent, out=ctx.session.write_raw, backlog=ctx.backlog,
                       recorder=recorder)
    audit["started_at"] = relay.started
    if not ctx.from_peer:  # a peer's part of a relayed session: the replica asked audits it
        svc.writer.put_audit(dict(audit))
    svc.commands.add(relay)
    ctx.session.attach(relay)
    status = "done"
    try:
        if term is not None:
            relay.open(p.ShellOpen(id=sid, command=command, term=term[0][:256] or "xterm",
                                   cols=min(term[1], 10000), rows=min(term[2], 10000)))
        else:
            relay.open(p.ShellOpen(id=sid, command=command, pty=False))
        result = await relay.wait()
    except asyncio.CancelledError:  # the operator's channel closed
        relay.cancel()
        status = "cancelled"
        raise
    finally:
        ctx.session.attach(None)
        svc.commands.remove(relay)
        r = relay.result
        if r.status == "cancelled":
            status = "cancelled"
        if not ctx.from_peer:
            _audited(ctx, audit, recorder, status, {"status": r.status, "exit_code": r.exit_code,
                                                    "signal": r.signal, "code": r.code, "error": r.error,
                                                    "pty": term is not None})
    if result.status == "error":
        raise RequestFailed(f"{name}: {result.error}", code="shell_failed")
    if result.status == "unreachable":
        raise _unreachable(f"{name} disconnected during the session")
    return Reply(None, result.code)


async def _through_peer(ctx: Ctx, replica: str, name: str, command: str, term, force: bool, audit: dict,
                        recorder) -> Reply:
    """The session on ``name`` opened on the peer ``replica`` holding it, bytes piped both ways."""
    peers = ctx.services.peers
    relay = PeerShell(replica, ctx.session, recorder)
    try:
        client = await peers.client(replica)
        await within(relay.open(client.connection, peer_command(name, command, force=force),
                                          None if term is None else (term[0][:256] or "xterm",
                                                                     min(term[1], 10000), min(term[2], 10000))),
                               peers.connect_timeout)
    except (CentralityError, OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        relay.close()
        if recorder is not None:
            recorder.close()
        why = (f"no answer within {peers.connect_timeout:g}s" if isinstance(exc, asyncio.TimeoutError)
               else getattr(exc, "reason", None) or str(exc))
        raise Conflict(fleetwide.unreachable(peers, replica, name, why, "open a shell"),
                       code="held_elsewhere") from None
    ctx.services.writer.put_audit(dict(audit))
    ctx.session.attach(relay)
    status, code = "done", None
    try:
        code = await relay.wait()
    except asyncio.CancelledError:  # the operator's channel closed: so does the peer's
        relay.close()
        status = "cancelled"
        raise
    finally:
        ctx.session.attach(None)
        if status == "cancelled":
            entry = {"status": "cancelled", "exit_code": None, "code": 130, "error": "the operator went away"}
        elif code is None:
            entry = {"status": "unreachable", "exit_code": None, "code": 255, "error": relay.lost}
        else:
            entry = {"status": "ok" if code == 0 else "failed", "exit_code": code, "code": code, "error": None}
        _audited(ctx, audit, recorder, status, {**entry, "signal": None, "pty": term is not None,
                                                "replica": replica})
    if code is None:
        raise _unreachable(f"{name}: {relay.lost}")
    return Reply(None, code)


def _audited(ctx: Ctx, audit: dict, recorder, status: str, entry: dict) -> None:
    """The session's audit row, finished."""
    ended = time.time()
    name = audit["selector"]
    entry = {"machine": name, **entry, "duration": round(ended - audit["started_at"], 3)}
    if recorder is not None:
        recorder.close()
        entry.update(recording=str(recorder.path), recorded_bytes=recorder.size,
                     recording_truncated=recorder.truncated)
    audit.update(finished_at=ended, status=status, exit_code=entry["code"], results={name: entry})
    ctx.services.writer.put_audit(audit)


def _unreachable(reason: str) -> Conflict:
    err = Conflict(reason, code="unreachable")
    err.exit_code = 255
    return err
