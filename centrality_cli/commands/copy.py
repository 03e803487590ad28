"""``centrality cp``: push a file or tree to many machines, or gather a file from each.

    centrality cp [-r] LOCAL TARGET...:PATH        push (pdcp / clush --copy)
    centrality cp TARGET...:PATH LOCALDIR          gather into LOCALDIR/<machine>/ (rpdcp / clush --rcopy)

TARGET is what ``exec`` takes (names, globs, gpu[01-16]); with ``-l`` or
``--all`` the part before ``:`` may be empty (``--all :/etc/hosts``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import output
from . import JSON

READ = 1024 * 1024


def _split(args: list[str]) -> tuple[str, list[str], str, str]:
    """("put"|"get", targets, remote path, local path)."""
    if len(args) < 2:
        output.fail("usage: centrality cp LOCAL TARGET...:PATH  or  centrality cp TARGET...:PATH LOCALDIR", 2)
    last = args[-1]
    if ":" in last and ":" not in args[0]:
        name, path = last.split(":", 1)
        targets = args[1:-1] + ([name] if name else [])
        if len(targets) < len(args) - 2 or not path:
            output.fail("the destination is TARGET:PATH, e.g. gpu[01-04]:/etc/nccl.conf", 2)
        return "put", targets, path, args[0]
    if ":" in args[-2]:
        name, path = args[-2].split(":", 1)
        if not path:
            output.fail("the source is TARGET:PATH, e.g. gpu[01-04]:/var/log/syslog", 2)
        return "get", args[:-2] + ([name] if name else []), path, last
    output.fail("one side of cp is TARGET:PATH (the machines), e.g. cp ./f gpu01:/tmp/f", 2)


def _selector(label, all_, include_drained) -> list[str]:
    argv = []
    for lab in label or ():
        argv += ["--label", lab]
    if all_:
        argv.append("--all")
    if include_drained:
        argv.append("--include-drained")
    return argv


def cp(ctx: typer.Context,
       args: List[str] = typer.Argument(..., help="LOCAL TARGET...:PATH (push) or TARGET...:PATH LOCALDIR (gather)."),
       recursive: bool = typer.Option(False, "--recursive", "-r", help="Push a directory tree."),
       mode: Optional[str] = typer.Option(None, "--mode", help="Octal mode of pushed files (default: the local file's)."),
       owner: Optional[str] = typer.Option(None, "--owner", help="USER[:GROUP] of pushed files (agent must be root)."),
       label: Optional[List[str]] = typer.Option(None, "--label", "-l", help="KEY=VALUE: only machines with it."),
       all_: bool = typer.Option(False, "--all", help="Every machine."),
       include_drained: bool = typer.Option(False, "--include-drained", help="Drained machines too."),
       yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before copying to many machines."),
       max_size: str = typer.Option("1G", "--max-size", help="Gather: refuse larger files."),
       fanout: int = typer.Option(32, "--fanout", help="Gather: machines sending at once."),
       follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Gather: read a symlinked file."),
       json: bool = JSON) -> None:
    """Copy files to or from many machines over their agents' channels.

    Push: every machine gets the same bytes, written beside the destination
    and renamed into place once their SHA-256 matches. Gather: each machine's
    file lands in LOCALDIR/<machine>/. Only live machines are used (the others
    are listed as skipped). Exit status: the worst of all machines. Ctrl-C
    cancels everywhere (partial files are removed).
    """
    from ..copyview import CopyView

    direction, targets, remote, local = _split(args)
    sel = _selector(label, all_, include_drained)
    view = CopyView(as_json=json, direction=direction, progress=sys.stderr.isatty() and not json)
    if direction == "put":
        entries = _entries(Path(local), recursive)
        argv = ["cp", "put", *sel] + (["--yes"] if yes else []) + (["-r"] if recursive else [])
        if mode:
            argv += ["--mode", mode]
        if owner:
            user, _, group = owner.partition(":")
            argv += ["--owner", user, "--group", group]
        argv += [*targets, "--", remote]
        view.total = sum(size for _, _, size, _ in entries)
        go = lambda client: _push(client, argv, entries, view)  # noqa: E731
    else:
        view.localdir = Path(local)
        view.localdir.mkdir(parents=True, exist_ok=True)
        view.basename = remote.rstrip("/").rsplit("/", 1)[-1] or "file"
        argv = ["cp", "get", *sel, "--max-size", max_size, "--fanout", str(fanout)]
        argv += (["--follow-symlinks"] if follow_symlinks else []) + [*targets, "--", remote]
        go = lambda client: _gather(client, argv, view)  # noqa: E731

    from centrality_core.errors import CentralityError

    try:
        asyncio.run(_with_client(ctx, go))
    except KeyboardInterrupt:  # the channel closes: the control plane cancels it everywhere
        view.abort()
        raise typer.Exit(130)
    except CentralityError as exc:
        view.abort()
        output.fail(exc.reason, exc.exit_code)
    view.finish()
    raise typer.Exit(view.exit_code)


async def _with_client(ctx: typer.Context, go) -> None:
    from centrality_core.client import OperatorClient

    async with OperatorClient(ctx.obj["context"]) as client:
        await go(client)


def _entries(local: Path, recursive: bool) -> list[tuple[str, Path, int, int]]:
    """(relative name, local path, size, mode) of what to push."""
    if local.is_dir():
        if not recursive:
            output.fail(f"{local} is a directory: add -r", 2)
        out = []
        for path in sorted(local.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue  # symlinks and special files are not copied
            st = path.stat()
            out.append((f"{local.name}/{path.relative_to(local).as_posix()}", path, st.st_size, st.st_mode & 0o7777))
        if not out:
            output.fail(f"{local} holds no regular file", 2)
        return out
    try:
        st = local.stat()
    except OSError as exc:
        output.fail(f"cannot read {local}: {exc.strerror}", 2)
    return [(local.name, local, st.st_size, st.st_mode & 0o7777)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ):
            h.update(chunk)
    return h.hexdigest()


async def _push(client, argv: list[str], entries, view) -> None:
    import msgspec

    process = await client.connection.create_process(shlex.join(argv), encoding=None)
    reader = asyncio.ensure_future(_read_lines(process, view))
    try:
        for rel, path, size, mode in entries:
            if reader.done():
                break  # refused or ended early: its answer says why
            digest = await asyncio.to_thread(_sha256, path)
            header = {"rel": rel, "size": size, "sha256": digest, "mode": mode}
            process.stdin.write(msgspec.json.encode(header) + b"\n")
            with open(path, "rb") as f:
                sent = 0
                while sent < size and not reader.done():
                    data = await asyncio.to_thread(f.read, min(READ, size - sent))
                    if not data:
                        raise OSError(f"{path} shrank while being copied")
                    process.stdin.write(data)
                    sent += len(data)
                    await process.stdin.drain()
        if not reader.done():
            process.stdin.write_eof()
    except (BrokenPipeError, ConnectionError):
        pass  # the control plane ended the request: its answer says why
    await reader
    await _check(process, view)


async def _gather(client, argv: list[str], view) -> None:
    process = await client.connection.create_process(shlex.join(argv), encoding=None)
    process.stdin.write_eof()
    await _read_lines(process, view)
    await _check(process, view)


async def _read_lines(process, view) -> None:
    import msgspec

    async for line in process.stdout:
        if line.strip():
            view.feed(msgspec.json.decode(line))


async def _check(process, view) -> None:
    from centrality_core.errors import ConnectError

    from centrality_core.client import request_error

    result = await process.wait()
    if view.summary is None:
        stderr = (result.stderr or b"").decode("utf-8", "replace")
        if result.exit_status and stderr.strip():
            raise request_error(stderr, result.exit_status)
        raise ConnectError("the control plane ended the copy before it finished")


def register(app: typer.Typer) -> None:
    app.command("cp")(cp)
