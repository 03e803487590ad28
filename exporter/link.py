"""The exporter's one link to the control plane: a ``subscribe --values`` stream
on the operator client, opened again with jittered backoff when it breaks.

The moment the stream fails or ends, ``FleetState.reset()`` drops every
machine, so a scrape during the outage shows ``centrality_up 0`` and no
machine values, never the last ones as if they were current. A silent
network (no FIN, no RST) is noticed by the SSH keepalive (every 30 s, the
operator client's setting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from centrality_core.backoff import Backoff

from .collector import LinkStats
from .fleet import FleetState, decode

log = logging.getLogger("centrality.export")


class Link:
    def __init__(self, state: FleetState, stats: LinkStats, *, context: str | None, interval: str = "5s",
                 backoff: Backoff | None = None, client_factory: Callable[[str | None], Any] | None = None) -> None:
        self.state = state
        self.stats = stats
        self.context = context
        self.interval = interval
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        if client_factory is None:
            from centrality_core.client import OperatorClient

            client_factory = OperatorClient
        self.client_factory = client_factory

    async def run(self) -> None:
        """Forever: subscribe and apply; on failure reset, wait, and subscribe again."""
        while True:
            try:
                async with self.client_factory(self.context) as client:
                    async for doc in client.subscribe(interval=self.interval, events=0, values=True, decode=decode):
                        self.state.apply(doc)
                        if self.stats.connected_since is None:
                            self.stats.connected_since = time.time()
                            self.backoff.reset()
                            log.info("subscribed to the control plane: %d machines", len(doc.machines))
                reason = "the control plane ended the subscription"
            except asyncio.CancelledError:
                self.state.reset()
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: reset and reconnect
                reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self.state.reset()
            self.stats.connected_since = None
            self.stats.last_error = reason
            self.stats.reconnects += 1
            delay = self.backoff.next()
            log.warning("link to the control plane lost (%s); retrying in %.1fs", reason, delay)
            await asyncio.sleep(delay)
