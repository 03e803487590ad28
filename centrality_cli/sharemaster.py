"""The master of a shared connection (``centrality_core/sharing.py``): one SSH connection
to a control plane, lent to the CLI commands of the same user over a Unix socket.

Started by a command (``sharing.start_master``), never by hand:

    python -m centrality_cli.sharemaster --context NAME --socket PATH --persist SECONDS

It holds ``PATH.lock`` for its whole life (one master per socket), connects as the
command would, then listens. Each request is one exec channel on the connection,
its stdout and stderr relayed as they come, then its exit status. It exits when
the connection ends (control plane gone or restarted), after ``--persist`` seconds
without a request, or on SIGTERM; it removes its socket on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from centrality_core import sharing
from centrality_core.client import REQUEST_PACKET, REQUEST_WINDOW
from centrality_core.errors import CentralityError

log = logging.getLogger("centrality.sharemaster")

#: How long a starting master waits for the lock that a command checking for it holds
#: for an instant (``sharing.master_starting``) before concluding another master has it.
LOCK_WAIT_S = 0.5


def take_lock(sock: Path) -> int | None:
    """The lock of ``sock``, held until this process ends; None when another master has it."""
    fd = os.open(sharing.lock_path(sock), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def _argv(payload: bytes) -> list[str] | None:
    """A request's argv, or None when it is not a non-empty list of strings."""
    try:
        argv = json.loads(payload).get("argv")
    except (ValueError, AttributeError):
        return None
    return argv if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) else None


class Master:
    def __init__(self, connection, persist: float) -> None:
        self.connection = connection
        self.persist = persist
        self.active = 0
        self.last = time.monotonic()
        self.done = asyncio.Event()
        #: Set once the connection is closed and the socket removed (a QUIT waits for it).
        self.stopped = asyncio.Event()

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = sharing.peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.geteuid():
            log.warning("refused a client of uid %d", uid)
            writer.close()
            return
        self.active += 1
        try:
            while True:  # one request after another on a link (a command makes one or a few)
                try:
                    kind, payload = await sharing.read_frame(reader)
                except asyncio.IncompleteReadError:
                    return
                if kind == sharing.QUIT:
                    log.info("asked to close the connection: exiting")
                    self.done.set()
                    await self.stopped.wait()
                    return
                argv = _argv(payload) if kind == sharing.REQUEST else None
                if argv is None:
                    log.warning("malformed request from a client: closed")
                    return
                if self.connection.is_closed():
                    writer.write(sharing.frame(sharing.NOT_RUN, b"the shared connection is closed"))
                    await writer.drain()
                    return
                await self.relay(argv, writer)
        except Exception as exc:  # noqa: BLE001 - a link or channel that broke: that client only
            log.warning("client link ended: %s", exc)
        finally:
            self.active -= 1
            self.last = time.monotonic()
            writer.close()

    async def relay(self, argv: list[str], writer: asyncio.StreamWriter) -> None:
        """One request on a channel of its own; its output relayed as it comes."""
        try:
            process = await self.connection.create_process(shlex.join(argv), encoding=None, window=REQUEST_WINDOW,
                                                           max_pktsize=REQUEST_PACKET)
        except Exception as exc:  # noqa: BLE001 - no channel: nothing ran, the command connects itself
            log.warning("cannot open a channel: %s", exc)
            writer.write(sharing.frame(sharing.NOT_RUN, f"cannot open a channel: {exc}".encode()))
            await writer.drain()
            return

        async def pump(stream, kind: bytes) -> None:
            while chunk := await stream.read(sharing.MAX_FRAME):
                writer.write(sharing.frame(kind, chunk))
                await writer.drain()

        try:
            await asyncio.gather(pump(process.stdout, sharing.STDOUT), pump(process.stderr, sharing.STDERR))
            result = await process.wait()
        finally:
            process.close()  # the client went away mid-answer: the channel goes too
        status = result.exit_status if result.exit_status is not None else 255
        writer.write(sharing.frame(sharing.EXIT, str(status).encode()))
        await writer.drain()

    async def idle_out(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.persist))
            if not self.active and time.monotonic() - self.last >= self.persist:
                log.info("no request for %gs: exiting", self.persist)
                self.done.set()
                return


async def serve(context: str, sock: Path, persist: float) -> int:
    from centrality_core.client import OperatorClient

    try:
        client = await OperatorClient(context).__aenter__()
    except CentralityError as exc:
        log.error("cannot connect: %s", exc.reason)
        return 1
    master = Master(client.connection, persist)
    sock.unlink(missing_ok=True)  # a stale socket (its master died): the lock says none runs
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(master.client, path=str(sock))
    finally:
        os.umask(old)
    inode = sock.stat().st_ino
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, master.done.set)
    loop.add_signal_handler(signal.SIGINT, master.done.set)
    log.info("sharing the connection to %s on %s (persist %gs)", client.address, sock, persist)
    waiters = [asyncio.ensure_future(master.done.wait()), asyncio.ensure_future(client.connection.wait_closed()),
               asyncio.ensure_future(master.idle_out())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        try:
            if sock.stat().st_ino == inode:  # still ours
                sock.unlink()
        except OSError:
            pass
        server.close()
        for w in waiters:
            w.cancel()
        await client.__aexit__(None, None, None)
        master.stopped.set()
        await asyncio.sleep(0)  # a QUIT's client is told, by its link closing
    if not master.done.is_set():
        log.info("the connection to the control plane ended: exiting")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m centrality_cli.sharemaster", description=__doc__)
    parser.add_argument("--context", required=True)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--persist", required=True, type=float)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # not a line per channel
    lock = take_lock(ns.socket)
    if lock is None:
        return 0  # another master has it: the commands use that one
    return asyncio.run(serve(ns.context, ns.socket, ns.persist))


if __name__ == "__main__":
    sys.exit(main())
