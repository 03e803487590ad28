"""File copies on the agent: ``file_put`` (write, verify, rename into place) and ``file_get``.

Paths are resolved one component at a time with ``openat`` and
``O_NOFOLLOW``, so what is checked is what is written:

* ``..`` anywhere is refused (``traversal``); a relative path is taken from
  the ``run_as`` user's home; with ``files_root`` set, every path is taken
  under that directory and no symlink is followed at all.
* The destination directory the operator named may go through symlinks (as
  ``/var/run``); below it (``-r``: the copied tree) no symlink is followed,
  and the file itself is never written through a symlink: the data goes to a
  new temporary file beside it (``O_EXCL``), which is renamed over the name
  (replacing a symlink, never following it) only once every byte is there and
  its SHA-256 matches. A failed or cancelled copy leaves nothing behind.
* When the agent (root) copies for another ``run_as`` user, it writes only
  where that user may (search and write permission on the directory, read on
  a file it sends) and the new file belongs to that user unless an owner is
  given.

Flow control: the control plane keeps at most its window of bytes in flight
per machine, paced by ``file_ack``; for a get the agent does the same, paced
by the control plane's acks. fsync and rename run in a thread.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import stat
from typing import Callable

from centrality_core import protocol as p

from .runas import RunAs, RunAsError, owner_ids, resolve

log = logging.getLogger("centrality.agent.files")

#: Bytes of a ``file_get`` the agent sends ahead of the control plane's acks.
GET_WINDOW = 1024 * 1024
#: Transfers one agent runs at once.
MAX_TRANSFERS = 64
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def components(path: str, home: str) -> list[str]:
    """``path`` as its components (relative: from ``home``); ``..`` refused."""
    if not path or "\0" in path:
        raise Refused("invalid", "empty or invalid path")
    if not path.startswith("/"):
        path = f"{home.rstrip('/')}/{path}"
    parts = [c for c in path.split("/") if c not in ("", ".")]
    if ".." in parts:
        raise Refused("traversal", f"{path}: '..' is not allowed in a path")
    return parts


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def open_dir(parts: list[str], *, root: str, follow_upto: int, create_from: int | None,
             user: RunAs) -> int:
    """Open the directory ``parts`` (a descriptor). Components before ``follow_upto`` may be
    symlinks (followed); none after. Missing ones from ``create_from`` on are created."""
    fd = os.open(root or "/", _DIR)
    try:
        for i, comp in enumerate(parts):
            where = "/" + "/".join(parts[:i + 1])
            try:
                nfd = os.open(comp, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create_from is None or i < create_from:
                    raise Refused("not_found", f"{where}: no such directory") from None
                _check(user, os.fstat(fd), 2 | 1, where.rsplit("/", 1)[0] or "/")
                os.mkdir(comp, 0o755, dir_fd=fd)
                nfd = os.open(comp, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                if user.switches:
                    os.fchown(nfd, user.uid, user.gid)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(comp, fd):
                    if root or i >= follow_upto:
                        raise Refused("symlink", f"{where} is a symlink: not followed "
                                      + ("out of files_root" if root else "inside the copied tree")) from None
                    nfd = os.open(comp, _DIR, dir_fd=fd)
                elif exc.errno == errno.ENOTDIR:
                    raise Refused("not_a_directory", f"{where} is not a directory") from None
                elif exc.errno == errno.EACCES:
                    raise Refused("permission", f"{where}: permission denied") from None
                else:
                    raise
            os.close(fd)
            fd = nfd
            _check(user, os.fstat(fd), 1, where)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check(user: RunAs, st: os.stat_result, bits: int, where: str) -> None:
    if user.switches and not user.may(st, bits):
        what = {1: "enter", 3: "write in", 4: "read"}.get(bits, "use")
        raise Refused("permission", f"{where}: {user.name} may not {what} it")


class Put:
    """One file being written: a temporary file beside its name, renamed at the end."""

    def __init__(self, msg: p.FilePut, send: Callable[[p.Message], None], user: RunAs, root: str) -> None:
        self.msg, self.send, self.user, self.root = msg, send, user, root
        self.dir_fd = self.fd = -1
        self.tmp = ""
        self.name = ""
        self.offset = 0
        self.sha = hashlib.sha256()
        self.done = False
        self.finishing: asyncio.Task | None = None

    def start(self) -> None:
        m = self.msg
        parts = components(m.path, self.user.home)
        if not parts:
            raise Refused("is_a_directory", f"{m.path}: is a directory, not a file name")
        base = components(m.base, self.user.home) if m.base else parts[:-1]
        if parts[:len(base)] != base or len(parts) <= len(base):
            raise Refused("traversal", f"{m.path} is not inside {m.base}")
        self.name = parts[-1]
        self.dir_fd = open_dir(parts[:-1], root=self.root, follow_upto=len(base),
                               create_from=len(base) if m.mkdirs else None, user=self.user)
        _check(self.user, os.fstat(self.dir_fd), 2 | 1, "/" + "/".join(parts[:-1]))
        try:
            st = os.lstat(self.name, dir_fd=self.dir_fd)
            if stat.S_ISDIR(st.st_mode):
                raise Refused("is_a_directory", f"{m.path} is a directory")
        except FileNotFoundError:
            pass
        self.tmp = f".{self.name[:200]}.{m.id[:16]}.centrality-tmp"
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o600, dir_fd=self.dir_fd)
        except FileExistsError:
            raise Refused("exists", f"a copy to {m.path} is already in progress") from None
        except PermissionError:
            raise Refused("permission", f"{m.path}: permission denied") from None
        if m.size == 0:
            self.finishing = asyncio.ensure_future(self._finish())
        else:
            self.send(p.FileAck(id=m.id, offset=0))

    def chunk(self, msg: p.FileChunk) -> None:
        if self.done or self.finishing is not None:
            return
        if msg.offset != self.offset or self.offset + len(msg.data) > self.msg.size:
            return self.fail("protocol", f"chunk at {msg.offset} (+{len(msg.data)}) does not follow "
                             f"{self.offset} of {self.msg.size} bytes")
        try:
            view = memoryview(msg.data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            return self.fail("io", f"{self.msg.path}: cannot write: {exc.strerror or exc}")
        self.sha.update(msg.data)
        self.offset += len(msg.data)
        self.send(p.FileAck(id=self.msg.id, offset=self.offset))
        if self.offset == self.msg.size:
            self.finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        m = self.msg
        digest = self.sha.hexdigest()
        if digest != m.sha256.lower():
            return self.fail("checksum", f"{m.path}: SHA-256 of what arrived is {digest}, expected {m.sha256}")
        try:
            uid, gid = owner_ids(m.owner, m.group)
            if uid == gid == -1 and self.user.switches:
                uid, gid = self.user.uid, self.user.gid
            await asyncio.to_thread(self._commit, uid, gid)
        except RunAsError as exc:
            return self.fail("owner", str(exc))
        except OSError as exc:
            return self.fail("permission" if exc.errno in (errno.EPERM, errno.EACCES) else "io",
                             f"{m.path}: {exc.strerror or exc}")
        self.done = True
        self._close()
        log.info("wrote %s (%d bytes)", m.path, m.size)
        self.send(p.FileDone(id=m.id, size=m.size, sha256=digest, mode=m.mode))

    def _commit(self, uid: int, gid: int) -> None:
        os.fchmod(self.fd, self.msg.mode)
        if uid != -1 or gid != -1:
            os.fchown(self.fd, uid, gid)
            os.fchmod(self.fd, self.msg.mode)  # chown clears setuid/setgid bits
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.tmp = ""

    def fail(self, code: str, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self._close()
        log.warning("copy to %s failed: %s", self.msg.path, reason)
        self.send(p.FileDone(id=self.msg.id, error=reason[:4000], code=code))

    def cancel(self) -> None:
        if self.finishing is not None and not self.finishing.done():
            return  # renaming already; let it end
        self.done = True
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp and self.dir_fd >= 0:
            try:
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            except OSError:
                pass
            self.tmp = ""
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


class Get:
    """One file being sent, ``GET_WINDOW`` bytes ahead of the control plane's acks."""

    def __init__(self, msg: p.FileGet, send: Callable[[p.Message], None], user: RunAs, root: str) -> None:
        self.msg, self.send, self.user, self.root = msg, send, user, root
        self.fd = -1
        self.size = self.sent = self.acked = 0
        self.sha = hashlib.sha256()
        self.done = False

    def start(self) -> None:
        m = self.msg
        parts = components(m.path, self.user.home)
        if not parts:
            raise Refused("is_a_directory", f"{m.path} is a directory")
        dir_fd = open_dir(parts[:-1], root=self.root, follow_upto=len(parts) - 1, create_from=None,
                          user=self.user)
        try:
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
            if self.root or not m.follow_symlinks:
                flags |= os.O_NOFOLLOW
            try:
                self.fd = os.open(parts[-1], flags, dir_fd=dir_fd)
            except FileNotFoundError:
                raise Refused("not_found", f"{m.path}: no such file") from None
            except PermissionError:
                raise Refused("permission", f"{m.path}: permission denied") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise Refused("symlink", f"{m.path} is a symlink (add --follow-symlinks)") from None
                raise
        finally:
            os.close(dir_fd)
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not_a_file", f"{m.path} is not a regular file")
        _check(self.user, st, 4, m.path)
        if st.st_size > m.max_bytes:
            raise Refused("too_large", f"{m.path} is {st.st_size} bytes, more than the limit of {m.max_bytes}")
        os.set_blocking(self.fd, True)
        self.size = st.st_size
        self.mode = stat.S_IMODE(st.st_mode)
        self.send(p.FileAck(id=m.id, offset=0, size=self.size))
        self._pump()

    def _pump(self) -> None:
        while not self.done and self.sent - self.acked < GET_WINDOW:
            try:
                data = os.read(self.fd, p.FILE_CHUNK)
            except OSError as exc:
                return self.fail("io", f"{self.msg.path}: cannot read: {exc.strerror or exc}")
            if not data or self.sent + len(data) > self.msg.max_bytes:
                if data:
                    return self.fail("too_large", f"{self.msg.path} grew past {self.msg.max_bytes} bytes")
                self.done = True
                self._close()
                self.send(p.FileDone(id=self.msg.id, size=self.sent, sha256=self.sha.hexdigest(),
                                     mode=self.mode))
                return
            self.sha.update(data)
            self.send(p.FileChunk(id=self.msg.id, offset=self.sent, data=data))
            self.sent += len(data)

    def ack(self, offset: int) -> None:
        self.acked = max(self.acked, min(offset, self.sent))
        self._pump()

    def fail(self, code: str, reason: str) -> None:
        self.done = True
        self._close()
        self.send(p.FileDone(id=self.msg.id, error=reason[:4000], code=code))

    def cancel(self) -> None:
        self.done = True
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Transfers:
    """The file transfers of one control-plane connection."""

    def __init__(self, send: Callable[[p.Message], None], *, run_as: str = "", root: str = "",
                 buffered: Callable[[], int] = lambda: 0) -> None:
        self.send = send
        self.run_as = run_as
        self.root = root
        self.buffered = buffered
        self.active: dict[str, Put | Get] = {}

    def handle(self, msg: p.Message) -> bool:
        """Handle a file message (or a cancel of a transfer); False if it is none of those."""
        if isinstance(msg, (p.FilePut, p.FileGet)):
            self._start(msg)
            return True
        t = self.active.get(getattr(msg, "id", ""))
        if isinstance(msg, p.FileChunk):
            if isinstance(t, Put):
                t.chunk(msg)
                self._reap(t)
            return True
        if isinstance(msg, p.FileAck):
            if isinstance(t, Get):
                t.ack(msg.offset)
                self._reap(t)
            return True
        if isinstance(msg, p.Cancel) and t is not None:
            t.cancel()
            self.active.pop(msg.id, None)
            return True
        return False

    def _start(self, msg: p.FilePut | p.FileGet) -> None:
        if msg.id in self.active:
            return self.send(p.FileDone(id=msg.id, error="a transfer with this id is already running",
                                        code="busy"))
        if len(self.active) >= MAX_TRANSFERS:
            return self.send(p.FileDone(id=msg.id, error="agent busy: too many transfers", code="busy"))
        try:
            user = resolve(self.run_as)
        except RunAsError as exc:
            return self.send(p.FileDone(id=msg.id, error=str(exc), code="run_as"))
        t = (Put if isinstance(msg, p.FilePut) else Get)(msg, self.send, user, self.root)
        self.active[msg.id] = t
        try:
            t.start()
        except Refused as exc:
            t.cancel()
            self.active.pop(msg.id, None)
            log.warning("refused %s %s: %s", type(t).__name__.lower(), msg.path[:200], exc.reason)
            return self.send(p.FileDone(id=msg.id, error=exc.reason[:4000], code=exc.code))
        except OSError as exc:
            t.cancel()
            self.active.pop(msg.id, None)
            return self.send(p.FileDone(id=msg.id, error=f"{msg.path}: {exc.strerror or exc}"[:4000], code="io"))
        if isinstance(t, Put) and t.finishing is not None:
            t.finishing.add_done_callback(lambda _f, t=t: self.active.pop(t.msg.id, None))
        self._reap(t)

    def _reap(self, t: Put | Get) -> None:
        if isinstance(t, Put) and t.finishing is not None:
            t.finishing.add_done_callback(lambda _f, i=t.msg.id: self.active.pop(i, None))
        elif t.done:
            self.active.pop(t.msg.id, None)

    def close(self) -> None:
        for t in list(self.active.values()):
            t.cancel()
        self.active.clear()
