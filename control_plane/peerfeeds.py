"""The peers' rows for one ``subscribe`` on a replica: one subscription per peer.

An operator's ``subscribe`` on replica A follows every peer's own machines
through a ``subscribe`` stream to that peer (at the same interval; the peer,
asked by a replica, sends rows of the machines whose agents are connected to
it, and a machine's last row when its agent leaves it). ``PeerFeeds`` keeps,
per peer, the rows of the machines it serves (``serving``) and the last row
of those that left it (``left``), the names whose row changed since the
handler last looked, and the peers' new events.

A peer that is not running is not followed; one whose stream ends (it
stopped, the connection broke, it restarted) is subscribed again after
``retry`` seconds, its rows dropped meanwhile (the handler then shows what
the store last recorded of its machines, marked ``from_store``). A peer that
stops answering without closing its connection (a partition) is noticed by
the SSH keepalive of the peer link.
"""

from __future__ import annotations

import asyncio
import logging

from centrality_core.documents import Event, FleetRow, MachineLatest, Snapshot, Update
from centrality_core.errors import CentralityError

from .peering import Peers

log = logging.getLogger("centrality.peering")


class PeerFeeds:
    def __init__(self, peers: Peers, interval: str, *, machine: str | None = None, no_fleet: bool = False,
                 retry: float = 1.0) -> None:
        self.peers = peers
        self.interval = interval
        #: ``subscribe --machine NAME [--no-fleet]``: the peers' latest samples of that machine too.
        self.machine = machine
        self.no_fleet = no_fleet
        self.retry = retry
        self._latest: dict[str, MachineLatest] = {}
        #: peer -> machine name -> its row, for machines whose agents are connected to it.
        self.serving: dict[str, dict[str, FleetRow]] = {}
        #: peer -> machine name -> the last row it sent of a machine that left it.
        self.left: dict[str, dict[str, FleetRow]] = {}
        #: Peers whose stream is up (its snapshot arrived).
        self.up: set[str] = set()
        self._changed: set[str] = set()
        self._events: list[Event] = []
        self._tasks: dict[str, asyncio.Task] = {}
        self._tried: set[str] = set()

    # ------------------------------------------------------------------ reads

    def live_row(self, name: str) -> FleetRow | None:
        """The row of a peer that serves machine ``name`` now, if one does."""
        for peer in sorted(self.serving):
            row = self.serving[peer].get(name)
            if row is not None:
                return row
        return None

    def newest_machine(self) -> MachineLatest | None:
        """The newest sample of ``machine`` a peer sent (the peer serving it has the newest)."""
        return max(self._latest.values(), key=lambda d: d.ts, default=None)

    def names(self) -> set[str]:
        return {n for rows in self.serving.values() for n in rows}

    def take(self) -> tuple[set[str], list[Event]]:
        """Names whose row changed and the peers' new events, since the last call."""
        changed, self._changed = self._changed, set()
        events, self._events = self._events, []
        return changed, events

    def settled(self) -> bool:
        """Every running peer answered with its snapshot, or failed once."""
        return all(p in self.up or p in self._tried for p in self.peers.names())

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Follow the running peers until cancelled."""
        try:
            while True:
                known = set(self.peers.names())
                for peer in known - set(self._tasks):
                    self._tasks[peer] = asyncio.create_task(self._follow(peer), name=f"peer-feed-{peer}")
                for peer in set(self._tasks) - known:
                    self._tasks.pop(peer).cancel()
                    self._down(peer)
                await asyncio.sleep(self.retry)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _follow(self, peer: str) -> None:
        while True:
            try:
                client = await self.peers.client(peer)
                async for doc in client.subscribe(interval=self.interval, events=0, machine=self.machine,
                                                  no_fleet=self.no_fleet):
                    self._take(peer, doc)
                log.info("replica %s ended its subscription", peer)
            except (CentralityError, OSError) as exc:
                log.info("subscription to replica %s lost: %s", peer, getattr(exc, "reason", exc))
            except Exception as exc:  # asyncssh errors: a broken link, retried like the rest
                import asyncssh

                if not isinstance(exc, asyncssh.Error):
                    raise
                log.info("subscription to replica %s lost: %s", peer, exc.reason)
            self._tried.add(peer)
            self._down(peer)
            await asyncio.sleep(self.retry)

    def _take(self, peer: str, doc) -> None:
        if isinstance(doc, MachineLatest):
            self._latest[peer] = doc
        elif isinstance(doc, Snapshot):
            old = self.serving.get(peer, {})
            rows = {r.name: r for r in doc.machines if r.state == "live"}
            self.serving[peer] = rows
            self.left[peer] = {}
            self._changed.update(old, rows)
            self.up.add(peer)
        elif isinstance(doc, Update):
            serving, left = self.serving.setdefault(peer, {}), self.left.setdefault(peer, {})
            for r in doc.machines:
                if r.state == "live":
                    serving[r.name] = r
                    left.pop(r.name, None)
                else:
                    serving.pop(r.name, None)
                    left[r.name] = r
                self._changed.add(r.name)
            for name in doc.removed:
                serving.pop(name, None)
                left.pop(name, None)
                self._changed.add(name)
            self._events.extend(reversed(doc.events))  # oldest first here, as the handler's own

    def _down(self, peer: str) -> None:
        self.up.discard(peer)
        self._changed.update(self.serving.pop(peer, {}))
        self._changed.update(self.left.pop(peer, {}))
