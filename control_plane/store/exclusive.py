"""One control plane per SQLite file.

SQLite is the embedded store of one process. Two control planes on one file
would each hold their own fleet in memory and write over each other (names,
cursors, limbo at start-up), so ``centrality server`` on SQLite takes an
exclusive lock before it opens the store, and a second one refuses to start.
Several control planes are replicas on Postgres (``--replica``), never on SQLite.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a sidecar file ``<db>.lock``, held
open for the life of the process. The kernel drops a ``flock`` when its holder
ends in any way, ``kill -9`` included, so a lock file left behind never blocks
a restart: only a live holder does. Not a lock on the database file itself:
SQLite's own POSIX locks on that file are dropped whenever any descriptor of it
closes, and some systems implement ``flock`` with them. The file holds the
holder's pid, for the message. Locks on network filesystems (NFS) are not
dependable: keep a SQLite store on a local disk.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import sqlalchemy as sa

from centrality_core.errors import ConfigError


class StoreLock:
    """An exclusive lock on ``path`` for as long as this object holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        """Take the lock, or raise ``ConfigError`` naming the holder. ``what``: the store, for the message."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise ConfigError(
                f"another control plane ({who}) has the SQLite store {what} open. SQLite is the store "
                "of one control plane: stop that one first, or give this one its own --data-dir or --db; "
                "several control planes share a store only on Postgres "
                "(--db postgresql+psycopg://... --replica NAME)") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the lock; the file may stay


def claim(url: str, *, replica: str = "") -> StoreLock | None:
    """What a control plane on the store at ``url`` must hold: on a SQLite file, its lock
    (taken here, or ``ConfigError``); on Postgres nothing. ``replica`` (the ``--replica``
    asked for) is refused on SQLite."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if replica:
        raise ConfigError(f"--replica {replica}: replicas need Postgres (--db postgresql+psycopg://...); "
                          "SQLite is the store of a single control plane")
    if not parsed.database or parsed.database == ":memory:":
        return None
    db = Path(parsed.database)
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = StoreLock(db.with_name(db.name + ".lock"))
    lock.acquire(str(db))
    return lock
