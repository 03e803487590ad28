"""``cp put`` (push an upload to many machines) and ``cp get`` (gather a file from each).

``cp put [SELECTOR] [--mode M] [--owner U] [--group G] [-r] [TARGET...] -- DEST``
reads its upload on stdin: for each file a JSON header line
``{"rel": PATH, "size": N, "sha256": HEX, "mode": M}`` then exactly N bytes;
end of input ends the upload. Without ``-r`` there is one file, written at
``DEST`` (or ``DEST/<rel>`` when DEST ends with ``/``); with ``-r`` each file
goes to ``DEST/<rel>`` and missing directories below DEST are created.

``cp get [SELECTOR] [--max-size S] [--fanout N] [--follow-symlinks] [TARGET...] -- PATH``
sends each machine's file back.

Both answer JSON lines like ``exec``: ``start`` (machines, skipped, unknown),
then ``progress`` (push) or ``begin`` / ``data`` (gather) and ``done`` per machine, then ``summary`` (its
``exit_code``, the request's status, is the worst of all machines). Both are
writes (operators only: a gather reads files as the agent's user) and audited
in the exec audit (argv ``["cp", "put"|"get", PATH]``). Closing the channel
(Ctrl-C) cancels the copy everywhere; agents remove their partial files.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter

from typing import Callable

import asyncssh
import msgspec

from centrality_core import hostlist, protocol as p
from centrality_core.documents import Skipped
from centrality_core.errors import CentralityError, UsageError

from .. import fleetwide
from ..copy import GatherRun, Inbox, PushRun, worst
from ..peer_copy import PeerCopy
from ..peer_exec import shares
from .exec import parse_size, resolution_json, resolve, selector_args, split_words
from .dispatch import Ctx, Reply, request

MAX_FILES = 100_000
DEFAULT_MAX_GET = "1G"
MAX_FANOUT = 1024


class Header(msgspec.Struct, forbid_unknown_fields=False):
    rel: str
    size: int
    sha256: str
    mode: int = 0o644


_header = msgspec.json.Decoder(Header)


def _put_args(parser: argparse.ArgumentParser) -> None:
    selector_args(parser)
    parser.add_argument("--mode", help="octal mode of the files (default: each local file's)")
    parser.add_argument("--owner", default="", help="user that owns the files (the agent must be root)")
    parser.add_argument("--group", default="", help="group of the files")
    parser.add_argument("-r", "--recursive", action="store_true", help="a tree: DEST/<rel>, directories made")
    parser.add_argument("--yes", action="store_true", help="no confirmation above the threshold")
    parser.add_argument("words", nargs=argparse.REMAINDER, help="[TARGET...] -- DEST")


def _get_args(parser: argparse.ArgumentParser) -> None:
    selector_args(parser)
    parser.add_argument("--max-size", default=DEFAULT_MAX_GET, help="refuse larger files (default 1G)")
    parser.add_argument("--fanout", type=int, default=32, help="machines sending at once (default 32)")
    parser.add_argument("--follow-symlinks", action="store_true", help="read a file that is a symlink")
    parser.add_argument("words", nargs=argparse.REMAINDER, help="[TARGET...] -- PATH")


def _targets(ctx: Ctx, ns, what: str):
    targets, rest = split_words(ns.words)
    if len(rest) != 1 or not rest[0]:
        raise UsageError(f"one {what} after --, e.g. cp put gpu[01-04] -- /etc/nccl.conf")
    selector, res = resolve(ctx, targets, ns)
    threshold = ctx.services.settings.exec_confirm_above
    if len(res.selected) > threshold and not getattr(ns, "yes", True):
        raise UsageError(f"this would copy to {len(res.selected)} machines, more than {threshold}: "
                         "confirm with --yes", code="confirm_required")
    sessions, skipped, remote = {}, [], {}
    for name in res.selected:
        s = ctx.services.registry.session(name)
        replica = fleetwide.holder(ctx.services.registry, name)
        if s is not None and tuple(getattr(s, "protocol", (1, 0))) >= p.SHELL_FILES:
            sessions[name] = s
        elif s is None and replica and not ctx.from_peer and replica in ctx.services.peers:
            remote.setdefault(replica, []).append(name)  # copied by the peer holding it
        elif s is None and replica:
            skipped.append((name, fleetwide.elsewhere(ctx.services.peers, replica, name, "copy")))
        else:
            skipped.append((name, "agent too old for copies (protocol < 1.3)"))
    return selector, res, sessions, skipped, rest[0], remote


async def _open_peers(ctx: Ctx, remote: dict[str, list[str]], argv: Callable[[list[str], str], list[str]],
                      skipped: list) -> list[PeerCopy]:
    """A part per peer replica holding some of the machines, opened at once; the machines of a
    peer that cannot be reached are skipped, saying so."""
    parts = [PeerCopy(ctx.services.peers, replica, names, argv(names, replica), emit=ctx.emit,
                      backlog=ctx.backlog) for replica, names in remote.items()]

    async def one(part: PeerCopy) -> PeerCopy | None:
        try:
            await part.open()
            return part
        except (CentralityError, OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            why = (f"no answer within {ctx.services.peers.connect_timeout:g}s"
                   if isinstance(exc, asyncio.TimeoutError) else getattr(exc, "reason", None) or str(exc))
            for name in part.copies:
                skipped.append((name, fleetwide.unreachable(ctx.services.peers, part.replica, name, why, "copy")))
            return None

    opened = await asyncio.gather(*(one(part) for part in parts))
    return [part for part in opened if part is not None]


def _audit(ctx: Ctx, cid: str, argv: list[str], selector, names: list[str], skipped) -> dict:
    row = {"id": cid, "started_at": time.time(), "finished_at": None, "actor": ctx.actor, "argv": argv,
           "selector": selector.describe(), "machines": names, "skipped": [list(s) for s in skipped],
           "results": {}, "status": "running", "exit_code": None}
    if not ctx.from_peer:  # a peer's part of a copy: the replica asked audits it
        ctx.services.writer.put_audit(dict(row))
    return row


def _names(sessions, parts: list[PeerCopy]) -> list[str]:
    return [*sessions, *(n for part in parts for n in part.copies)]


def _start_line(cid: str, res, names: list[str], skipped_more) -> dict:
    doc = resolution_json(res)
    doc["machines"] = names
    doc["machines_folded"] = hostlist.fold(names)
    doc["skipped"] += [Skipped(machine=n, reason=why) for n, why in skipped_more]
    return {"type": "start", "id": cid, **doc}


def _summary(row: dict, copies) -> dict:
    counts = Counter(c.status for c in copies)
    return {"type": "summary", "id": row["id"], "status": row["status"], "exit_code": row["exit_code"],
            "duration": round(row["finished_at"] - row["started_at"], 3), "counts": dict(counts),
            "failed": hostlist.fold(c.name for c in copies if c.status != "ok"),
            "bytes": sum(c.bytes for c in copies)}


async def _finish(ctx: Ctx, run, row: dict, status: str, parts: list[PeerCopy] = ()) -> Reply:
    ctx.services.commands.remove(run)
    copies = [*run.copies.values(), *(c for part in parts for c in part.copies.values())]
    code = worst(copies) if copies else 1
    row.update(finished_at=time.time(), status=status, exit_code=code, results={c.name: c.json() for c in copies})
    if not ctx.from_peer:
        ctx.services.writer.put_audit(row)
    return Reply(_summary(row, copies), code)


def _cancel(parts: list[PeerCopy], why: str = "cancelled by the operator") -> None:
    for part in parts:
        part.close(why)


@request("cp put", writes=True, args=_put_args)
async def put(ctx: Ctx, ns) -> Reply:
    """Push files (read from stdin) to many machines: verified, renamed into place."""
    if ctx.session is None:
        raise UsageError("cp put reads its upload from the channel")
    mode = None
    if ns.mode is not None:
        try:
            mode = int(ns.mode, 8)
        except ValueError:
            raise UsageError(f"--mode {ns.mode!r} is not an octal mode such as 0644") from None
        if not 0 <= mode <= 0o7777:
            raise UsageError("--mode is at most 7777")
    selector, res, sessions, skipped, dest, remote = _targets(ctx, ns, "destination")
    inbox = Inbox(ctx.session.chan)
    ctx.session.attach(inbox)

    def peer_argv(names: list[str], replica: str) -> list[str]:  # the targets were decided here
        return ["cp", "put", "--include-drained", "--yes", *(["-r"] if ns.recursive else []),
                *(["--mode", ns.mode] if ns.mode is not None else []), *(["--owner", ns.owner] if ns.owner else []),
                *(["--group", ns.group] if ns.group else []), *names, "--", dest]

    parts = await _open_peers(ctx, remote, peer_argv, skipped)
    cid = uuid.uuid4().hex
    names = _names(sessions, parts)
    row = _audit(ctx, cid, ["cp", "put", dest], selector, names, [*res.skipped, *skipped])
    ctx.emit(_start_line(cid, res, names, skipped))
    run = PushRun(id=cid, sessions=sessions, emit=ctx.emit)
    ctx.services.commands.add(run)
    limit = ctx.services.settings.copy_max_bytes
    status, total, files = "done", 0, 0

    async def read(n: int) -> bytes:
        """The next bytes of the upload, passed on to every peer part (once their channels took
        what they were given before)."""
        data = await inbox.read(n)
        for part in parts:
            part.write(data)
        await asyncio.gather(*(part.drain() for part in parts))
        return data

    try:
        while True:
            line = await inbox.readline()
            if not line.strip():
                if inbox.closed and not inbox.buf:
                    break
                continue
            try:
                h = _header.decode(line)
            except msgspec.DecodeError as exc:
                raise UsageError(f"bad upload header: {exc}") from None
            files += 1
            total += max(h.size, 0)
            if h.size < 0 or total > limit or files > MAX_FILES:
                raise UsageError(f"the upload is larger than the limit ({limit} bytes, {MAX_FILES} files)",
                                 code="too_large")
            if not ns.recursive and files > 1:
                raise UsageError("several files need -r")
            path, base = _dest(dest, h.rel, ns.recursive)
            for part in parts:
                part.write(line)
            await run.put(p.FilePut(id=cid, path=path, size=h.size, sha256=h.sha256,
                                    mode=mode if mode is not None else h.mode & 0o7777,
                                    owner=ns.owner, group=ns.group, base=base, mkdirs=ns.recursive),
                          read)
        if files == 0:
            raise UsageError("nothing to copy: the upload was empty")
        run.finish()
        for part in parts:
            part.write_eof()
        await asyncio.gather(*(part.wait() for part in parts))
    except asyncio.CancelledError:
        run.cancel()
        _cancel(parts)
        status = "cancelled"
        await _finish(ctx, run, row, status, parts)
        raise
    except BaseException:
        run.cancel("the upload failed")
        _cancel(parts, "the upload failed")
        await _finish(ctx, run, row, "cancelled", parts)
        raise
    finally:
        ctx.session.attach(None)
    return await _finish(ctx, run, row, status, parts)


def _dest(dest: str, rel: str, recursive: bool) -> tuple[str, str]:
    """(path, base) on the machine for the upload's file ``rel``."""
    rel = rel.strip("/")
    if recursive:
        return f"{dest.rstrip('/')}/{rel}", dest.rstrip("/") or "/"
    if dest.endswith("/"):
        return dest + rel.rsplit("/", 1)[-1], ""
    return dest, ""


@request("cp get", writes=True, args=_get_args)
async def get(ctx: Ctx, ns) -> Reply:
    """Gather one file from each machine; its bytes stream back as JSON lines."""
    max_bytes = parse_size(ns.max_size)
    if not 0 < ns.fanout <= MAX_FANOUT:
        raise UsageError(f"--fanout is between 1 and {MAX_FANOUT}")
    ns.yes = True  # reading needs no confirmation
    selector, res, sessions, skipped, path, remote = _targets(ctx, ns, "path")
    fanout = shares(ns.fanout, {"": len(sessions), **{r: len(names) for r, names in remote.items()}})

    def peer_argv(names: list[str], replica: str) -> list[str]:  # the targets were decided here
        return ["cp", "get", "--include-drained", "--max-size", ns.max_size, "--fanout", str(fanout[replica]),
                *(["--follow-symlinks"] if ns.follow_symlinks else []), *names, "--", path]

    parts = await _open_peers(ctx, remote, peer_argv, skipped)
    cid = uuid.uuid4().hex
    names = _names(sessions, parts)
    row = _audit(ctx, cid, ["cp", "get", path], selector, names, [*res.skipped, *skipped])
    ctx.emit(_start_line(cid, res, names, skipped))
    run = GatherRun(id=cid, sessions=sessions, emit=ctx.emit, backlog=ctx.backlog, fanout=fanout[""],
                    get=p.FileGet(id=cid, path=path, max_bytes=max_bytes, follow_symlinks=ns.follow_symlinks))
    ctx.services.commands.add(run)
    try:
        await asyncio.gather(run.run(), *(part.wait() for part in parts))
    except asyncio.CancelledError:
        run.cancel()
        _cancel(parts)
        await _finish(ctx, run, row, "cancelled", parts)
        raise
    return await _finish(ctx, run, row, "done", parts)
