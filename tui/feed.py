"""Keeps the fleet model fed from the subscription, and reconnects when it breaks.

``Feed.run()`` is one asyncio task: it reads ``source.snapshots()`` and
applies each document to the model as it arrives (cheap: dictionary updates);
drawing is someone else's business (the app redraws a few times a second
from the model). When the link breaks it records why, waits a jittered,
growing delay (``centrality_core.backoff.Backoff``) and subscribes again; the
new snapshot replaces the rows. No Textual here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import msgspec

from centrality_core.backoff import Backoff
from centrality_core.documents import Snapshot, Update

from .model import FleetModel
from .source import FleetSource

log = logging.getLogger("centrality.tui")

CHUNK = 1000  # rows applied between yields to the event loop, so keys stay responsive


@dataclass
class LinkStatus:
    state: str = "connecting"  # connecting | connected | lost
    reason: str = ""
    attempt: int = 0  # failed attempts since the last good connection
    retry_at: float | None = None  # monotonic time of the next attempt
    since: float = 0.0  # monotonic time of the last change
    revision: int = 0


class Feed:
    def __init__(self, source: FleetSource, model: FleetModel, *, backoff: Backoff | None = None,
                 on_status: Callable[[LinkStatus], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.model = model
        self.backoff = backoff or Backoff(initial=0.5, maximum=10.0)
        self.on_status = on_status
        self.monotonic = monotonic
        self.status = LinkStatus(since=monotonic())
        self.documents = 0
        self.last_document_at: float | None = None  # monotonic time of the last document

    def _set(self, state: str, reason: str = "", retry_at: float | None = None) -> None:
        s = self.status
        s.state, s.reason, s.retry_at = state, reason, retry_at
        s.since = self.monotonic()
        s.revision += 1
        if self.on_status is not None:
            self.on_status(s)

    async def run(self) -> None:
        """Forever: subscribe, apply, and on failure wait and subscribe again."""
        while True:
            try:
                async for doc in self.source.snapshots():
                    await self._apply(doc)
                reason = "the subscription ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            delay = self.backoff.next()
            self.status.attempt += 1
            log.info("subscription lost (%s); retrying in %.1fs", reason, delay)
            self._set("lost", reason, self.monotonic() + delay)
            await asyncio.sleep(delay)
            self._set("connecting", reason)

    async def _apply(self, doc: Snapshot | Update) -> None:
        self.documents += 1
        self.last_document_at = self.monotonic()
        rows = doc.machines
        if isinstance(doc, Snapshot):
            if len(rows) > CHUNK:  # 10,000 machines: a few slices, keys handled in between
                self.model.retain(rows)
                for i in range(0, len(rows), CHUNK):
                    self.model.update_rows(rows[i:i + CHUNK])
                    await asyncio.sleep(0)
                self.model.finish_snapshot(doc)
            else:
                self.model.apply(doc)
            self.backoff.reset()
            self.status.attempt = 0
            self._set("connected")
            return
        if len(rows) > CHUNK:
            # Large updates are applied in slices, yielding in between, so a
            # key pressed meanwhile is handled within a slice's time.
            for i in range(0, len(rows) - CHUNK, CHUNK):
                self.model.update_rows(rows[i:i + CHUNK])
                await asyncio.sleep(0)
            doc = msgspec.structs.replace(doc, machines=rows[(len(rows) - 1) // CHUNK * CHUNK:])
        self.model.apply(doc)
