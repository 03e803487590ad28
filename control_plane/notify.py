"""Postgres LISTEN/NOTIFY for replicas: one listening connection per replica.

``Listener`` holds one psycopg connection (autocommit) that LISTENs on a few
channels and calls a handler per notification, on the event loop. When the
connection drops (Postgres restarted, a network cut), it reconnects with a
jittered backoff and calls ``on_reconnect``: notifications sent while it was
away are lost, so whoever uses it re-reads what they cover from the store.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

import sqlalchemy as sa

log = logging.getLogger("centrality.notify")

BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    def __init__(self, url: str, handlers: dict[str, Callable[[str], None]],
                 on_reconnect: Callable[[], None] | None = None) -> None:
        self.conninfo = conninfo(url)
        self.handlers = handlers
        self.on_reconnect = on_reconnect
        #: Set each time the channels are listened to (tests wait on it).
        self.listening = asyncio.Event()
        self._conn = None

    async def run(self) -> None:
        import psycopg
        from psycopg import sql

        delay, first = BACKOFF_FIRST, True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    self._conn = conn
                    for channel in self.handlers:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening.set()
                    if not first and self.on_reconnect is not None:
                        self.on_reconnect()
                    first, delay = False, BACKOFF_FIRST
                    async for n in conn.notifies():
                        handler = self.handlers.get(n.channel)
                        if handler is not None:
                            try:
                                handler(n.payload)
                            except Exception:  # noqa: BLE001 - one bad notification must not stop listening
                                log.exception("handling a notification on %s failed", n.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                log.warning("notification connection lost (%s); reconnecting in %.1fs",
                            type(exc).__name__, delay)
            finally:
                self._conn = None
                self.listening.clear()
            first = False
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def drop(self) -> None:
        """Close the listening connection (tests: it must come back)."""
        if self._conn is not None:
            await self._conn.close()
